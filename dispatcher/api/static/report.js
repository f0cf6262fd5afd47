// Draws the report page from the JSON embedded in it: figure cards, SVG charts and tables.
// No libraries and no network: the page must open from a file on a laptop without a connection.
(function () {
  "use strict";
  var SVG_NS = "http://www.w3.org/2000/svg";
  var RATES = [["arrival_rate", "Arrival rate"], ["response_rate", "Response rate"]];
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var root = document.getElementById("report");

  function html(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function svg(tag, attrs, text) {
    var node = document.createElementNS(SVG_NS, tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function missing(v) { return v === null || v === undefined || v === ""; }
  function pct(v) { return missing(v) ? "n/a" : (v * 100).toFixed(1) + "%"; }
  function plain(v) { return missing(v) ? "n/a" : String(v); }
  function seconds(v) { return missing(v) ? "n/a" : Number(v).toFixed(1) + " s"; }

  function label(group) {
    var order = ["batch", "campaign", "channel", "variant", "provider", "sender", "period"];
    var parts = order.filter(function (k) { return k in group; }).map(function (k) {
      return missing(group[k]) ? (missing(group[k + "_id"]) ? "none" : "#" + group[k + "_id"]) : String(group[k]);
    });
    return parts.join(" · ") || "all";
  }

  function heading(title) { root.appendChild(html("h2", {}, title)); }

  function cards(t) {
    var items = [
      ["Messages", plain(t.messages)], ["Sent", plain(t.sent)], ["Delivered", plain(t.delivered)],
      ["Failed", plain(t.failed)], ["Arrival rate", pct(t.arrival_rate)], ["Response rate", pct(t.response_rate)],
      ["Click rate", pct(t.click_rate)], ["Reply rate", pct(t.reply_rate)], ["Open rate", pct(t.open_rate)],
      ["Machine opens", plain(t.machine_openers)], ["Machine clicks", plain(t.machine_clickers)],
      ["Opt-out rate", pct(t.optout_rate)], ["Conversion rate", pct(t.conversion_rate)],
      ["Conversions", plain(t.conversions)], ["Cost", plain(t.cost)],
      ["Cost per delivered", plain(t.cost_per_delivered)], ["Cost per conversion", plain(t.cost_per_conversion)],
      ["Median time to delivery", seconds(t.median_seconds_to_delivery)]
    ];
    var box = html("div", { "class": "cards", "id": "totals" });
    items.forEach(function (item) {
      var card = html("div", { "class": "card" });
      card.appendChild(html("div", { "class": "label" }, item[0]));
      card.appendChild(html("div", { "class": "value" }, item[1]));
      box.appendChild(card);
    });
    root.appendChild(box);
  }

  function legend(series) {
    var box = html("div", { "class": "legend" });
    series.forEach(function (s) {
      var item = html("span", {});
      item.appendChild(html("i", { "style": "background: var(--" + s[2] + ")" }));
      item.appendChild(document.createTextNode(s[1]));
      box.appendChild(item);
    });
    root.appendChild(box);
  }

  function frame(name, width, height) {
    // never wider than drawn: a chart of two bars must not be blown up to the page width
    var chart = svg("svg", { "viewBox": "0 0 " + width + " " + height, "data-chart": name, "role": "img",
      "style": "max-width: " + width + "px" });
    root.appendChild(chart);
    return chart;
  }

  function percentAxis(chart, left, top, plotW, plotH, side) {
    [0, 0.25, 0.5, 0.75, 1].forEach(function (tick) {
      var y = top + plotH - tick * plotH;
      chart.appendChild(svg("line", { "class": "axis", x1: left, x2: left + plotW, y1: y, y2: y }));
      var x = side === "right" ? left + plotW + 4 : left - 4;
      chart.appendChild(svg("text", { x: x, y: y + 4, "text-anchor": side === "right" ? "start" : "end" },
        (tick * 100) + "%"));
    });
  }

  // Grouped bars: arrival and response rate side by side for each row.
  function rateBars(name, title, rows) {
    heading(title);
    if (!rows.length) { root.appendChild(html("p", {}, "No messages yet.")); return; }
    legend([["", "Arrival rate", "arrival"], ["", "Response rate", "response"]]);
    var left = 44, top = 16, plotH = 200, slot = Math.max(48, Math.min(120, 640 / rows.length));
    var chart = frame(name, left + slot * rows.length + 16, top + plotH + 40);
    percentAxis(chart, left, top, slot * rows.length, plotH, "left");
    var barW = (slot - 16) / RATES.length;
    rows.forEach(function (row, i) {
      var group = label(row.group);
      var g = svg("g", { "class": "group", "data-group": group });
      RATES.forEach(function (rate, j) {
        var value = row[rate[0]];
        var h = missing(value) ? 0 : Math.min(value, 1) * plotH;
        var x = left + i * slot + 8 + j * barW;
        g.appendChild(svg("rect", {
          "class": "bar " + rate[0], x: x, y: top + plotH - h, width: barW - 2, height: h,
          "data-series": rate[0], "data-group": group, "data-value": missing(value) ? "" : String(value)
        }));
        g.appendChild(svg("text", {
          "class": "bar-label", x: x + barW / 2 - 1, y: top + plotH - h - 3, "text-anchor": "middle",
          "data-series": rate[0], "data-group": group
        }, pct(value)));
      });
      g.appendChild(svg("text", { x: left + i * slot + slot / 2, y: top + plotH + 16, "text-anchor": "middle" },
        group));
      chart.appendChild(g);
    });
  }

  // Sent volume as bars (left scale) with arrival and response rate as lines (right scale).
  function timeChart(rows, unit) {
    heading("Volume and rates per " + unit);
    if (!rows.length) { root.appendChild(html("p", {}, "No messages yet.")); return; }
    legend([["", "Sent", "volume"], ["", "Arrival rate", "arrival"], ["", "Response rate", "response"]]);
    var left = 44, top = 16, plotH = 200, slot = Math.max(24, Math.min(80, 640 / rows.length));
    var chart = frame("timeline", left + slot * rows.length + 48, top + plotH + 40);
    percentAxis(chart, left, top, slot * rows.length, plotH, "right");
    var most = Math.max.apply(null, rows.map(function (r) { return r.sent; }).concat([1]));
    chart.appendChild(svg("text", { x: left - 4, y: top + 4, "text-anchor": "end" }, String(most)));
    var lines = {}, points = [];
    rows.forEach(function (row, i) {
      var group = label(row.group), x = left + i * slot, h = row.sent / most * plotH;
      chart.appendChild(svg("rect", {
        "class": "bar volume", x: x + 4, y: top + plotH - h, width: slot - 8, height: h,
        "data-series": "sent", "data-group": group, "data-value": String(row.sent)
      }));
      chart.appendChild(svg("text", { x: x + slot / 2, y: top + plotH + 16, "text-anchor": "middle" }, group));
      RATES.forEach(function (rate) {
        var value = row[rate[0]];
        if (missing(value)) { return; }
        var cy = top + plotH - Math.min(value, 1) * plotH;
        (lines[rate[0]] = lines[rate[0]] || []).push((x + slot / 2) + "," + cy);
        points.push(svg("circle", {
          "class": "point " + rate[0], cx: x + slot / 2, cy: cy, r: 3.5,
          "data-series": rate[0], "data-group": group, "data-value": String(value)
        }));
      });
    });
    // lines over the bars, points over the lines
    Object.keys(lines).forEach(function (series) {
      chart.appendChild(svg("polyline", { "class": series, points: lines[series].join(" "), "data-series": series }));
    });
    points.forEach(function (point) { chart.appendChild(point); });
  }

  function table(title, rows) {
    heading(title);
    var columns = [["messages", plain], ["sent", plain], ["delivered", plain], ["failed", plain],
      ["arrival_rate", pct], ["response_rate", pct], ["click_rate", pct], ["reply_rate", pct],
      ["optout_rate", pct], ["conversion_rate", pct], ["cost", plain], ["median_seconds_to_delivery", seconds]];
    var t = html("table", { "data-table": title });
    var head = html("tr", {});
    head.appendChild(html("th", {}, ""));
    columns.forEach(function (c) { head.appendChild(html("th", {}, c[0].replace(/_/g, " "))); });
    t.appendChild(head);
    rows.forEach(function (row) {
      var tr = html("tr", {});
      tr.appendChild(html("td", {}, label(row.group)));
      columns.forEach(function (c) { tr.appendChild(html("td", {}, c[1](row[c[0]]))); });
      t.appendChild(tr);
    });
    root.appendChild(t);
  }

  function reasons(list) {
    heading("Failure reasons");
    if (!list.length) { root.appendChild(html("p", {}, "No failures.")); return; }
    var t = html("table", { "data-table": "failure reasons" });
    list.forEach(function (r) {
      var tr = html("tr", {});
      tr.appendChild(html("td", {}, r.code));
      tr.appendChild(html("td", {}, String(r.count)));
      t.appendChild(tr);
    });
    root.appendChild(t);
  }

  cards(data.totals);
  if (root.getAttribute("data-kind") === "campaign") {
    rateBars("batches", "Arrival and response rate per batch", data.batches);
    rateBars("channels", "Arrival and response rate per channel", data.channels);
    timeChart(data.timeline, "day");
    table("Per batch", data.batches);
    table("Per channel", data.channels);
    table("Per variant", data.variants);
    reasons(data.failure_reasons);
  } else {
    rateBars("campaigns", "Arrival and response rate per campaign", data.campaigns);
    rateBars("channels", "Arrival and response rate per channel", data.channels);
    timeChart(data.timeline, data.period);
    table("Per campaign", data.campaigns);
    table("Per channel", data.channels);
  }
  root.setAttribute("data-rendered", "true");
}());
