"""Import benchmark (issue 3): a messy CSV through the HTTP API on PostgreSQL and SQLite, against the
bare-library ceiling measured in the same run.

    .venv/bin/python -m bench.import               # 1,000,000 rows
    .venv/bin/python -m bench.import --rows 100000 --db sqlite

Starts real ``dispatcher serve`` and ``dispatcher worker`` subprocesses (one worker, which runs its own
cleaning pool), creates an API key with the CLI, streams the file as ``text/csv`` and polls the import until
it completes. Peak RSS comes from ``/proc/<pid>/status`` (VmHWM) of the API process, the worker and every
process under it. Needs PostgreSQL at 127.0.0.1:5432 (user postgres; database ``$BENCH_PG_DB``, default
dispatcher_bench, is dropped and re-created) and Redis (``$BENCH_REDIS_URL``, default db 14, is flushed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import itertools
import json
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench._datagen import write_csv

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
# Overridable so that runs beside other benchmarks or test sessions never share a database or Redis db.
PG_DB = os.environ.get("BENCH_PG_DB", "dispatcher_bench")
PG_URL = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{PG_DB}"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
PYTHON = sys.executable
_STARTED: list[subprocess.Popen[bytes]] = []
_SCOPES = ("--scope", "read", "--scope", "write", "--json")


# ---------------------------------------------------------------- ceiling: the libraries alone


def _ceiling_part(path: str, start: int, end: int) -> tuple[int, float, float]:
    """One process: read its byte range (untimed), then time phonenumbers + email-validator over it."""
    import phonenumbers
    from email_validator import EmailNotValidError, validate_email
    from phonenumbers import timezone

    with open(path, "rb") as handle:
        handle.seek(start)
        text = handle.read(end - start).decode("utf-8")
    values = [(r[0], r[1], r[4] or "US") for r in csv.reader(text.splitlines()) if len(r) >= 5]
    values = [v for v in values if v[0] != "phone"]
    e164 = phonenumbers.PhoneNumberFormat.E164
    began = time.monotonic()  # CLOCK_MONOTONIC is system-wide on Linux: comparable across processes
    for phone, email, region in values:
        if phone:
            try:
                number = phonenumbers.parse(phone, region)
                if phonenumbers.is_valid_number(number):
                    phonenumbers.format_number(number, e164)
                    timezone.time_zones_for_number(number)
                    phonenumbers.number_type(number)
            except phonenumbers.NumberParseException:
                pass
        if email:
            with contextlib.suppress(EmailNotValidError):
                validate_email(email, check_deliverability=False)
    return len(values), began, time.monotonic()


def _ranges(path: Path, parts: int) -> list[tuple[int, int]]:
    size = path.stat().st_size
    cuts = [0]
    with path.open("rb") as handle:
        for i in range(1, parts):
            handle.seek(size * i // parts)
            handle.readline()
            cuts.append(handle.tell())
    cuts.append(size)
    return list(itertools.pairwise(cuts))


def ceiling(path: Path, processes: int = 2) -> float:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(processes) as pool:
        parts = pool.starmap(_ceiling_part, [(str(path), a, b) for a, b in _ranges(path, processes)])
    rows = sum(n for n, _, _ in parts)
    wall = max(end for _, _, end in parts) - min(start for _, start, _ in parts)
    return rows / wall


# ---------------------------------------------------------------- process bookkeeping


def _kill_all() -> None:
    for proc in _STARTED:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)  # its own session: the pool children go with it
            except ProcessLookupError:
                continue
    deadline = time.monotonic() + 20
    for proc in _STARTED:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    _STARTED.clear()


def _start(
    args: list[str], env: dict[str, str], log: Path, profile: Path | None = None
) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    command = [PYTHON, "-m", "cProfile", "-o", str(profile)] if profile else [PYTHON]
    proc = subprocess.Popen(
        [*command, "-m", "dispatcher", *args], env=env, stdout=out, stderr=out, start_new_session=True
    )
    _STARTED.append(proc)
    return proc


def _hwm_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _descendants(root: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        kids = parents.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


@dataclass
class Peaks:
    """Highest VmHWM seen per process (a process's VmHWM only grows, so the last reading is its peak)."""

    kb: dict[int, int] = field(default_factory=dict)

    def read(self, *pids: int) -> None:
        for pid in pids:
            self.kb[pid] = max(self.kb.get(pid, 0), _hwm_kb(pid))

    def tree(self, root: int) -> None:
        self.read(root, *_descendants(root))

    def mb(self, pids: list[int]) -> float:
        return sum(self.kb.get(pid, 0) for pid in pids) / 1024


# ---------------------------------------------------------------- the HTTP run


@dataclass
class RunResult:
    db: str
    rows: int
    seconds: float
    upload_s: float
    publish_s: float  # from the poll that saw every row staged to the one that saw completed
    job: dict[str, Any]
    api_mb: float
    worker_mb: float
    children_mb: list[float]

    @property
    def rate(self) -> float:
        return self.rows / self.seconds


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _reset_pg(create: bool) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{PG_DB}" WITH (FORCE)')
        if create:
            await conn.execute(f'CREATE DATABASE "{PG_DB}"')
    finally:
        await conn.close()


async def _flush_redis() -> None:
    from redis.asyncio import Redis

    redis = Redis.from_url(REDIS_URL)
    await redis.flushdb()
    await redis.aclose()


def _env(database_url: str, work: Path, port: int, clean_processes: int | None) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "DISPATCHER_QUEUE": f"bench:{uuid.uuid4().hex[:8]}",
        "DISPATCHER_VAR_DIR": str(work),
        "DISPATCHER_SECRET_KEY": "bench-secret",
        "DISPATCHER_API_RATE_LIMIT": "0",
        "DISPATCHER_LOG_LEVEL": "WARNING",
        "DISPATCHER_PORT": str(port),
    }
    if clean_processes is not None:
        env["DISPATCHER_CLEAN_PROCESSES"] = str(clean_processes)
    return env


async def _file_chunks(path: Path, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    with path.open("rb") as handle:
        while piece := handle.read(size):
            yield piece


async def _wait_up(http: aiohttp.ClientSession, base: str, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            raise RuntimeError("dispatcher serve exited; see its log")
        try:
            async with http.get(f"{base}/v1/openapi.json") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("dispatcher serve did not come up")


def _prepare(env: dict[str, str]) -> str:
    """Migrate the fresh database and create an API key with the CLI, as an operator would."""
    subprocess.run([PYTHON, "-m", "dispatcher", "migrate"], env=env, check=True, capture_output=True)
    made = subprocess.run(
        [PYTHON, "-m", "dispatcher", "apikey", "create", "--workspace", "bench", "--name", "bench", *_SCOPES],
        env=env,
        check=True,
        capture_output=True,
    )
    return str(json.loads(made.stdout)["key"])


async def http_run(
    db: str, path: Path, rows: int, work: Path, clean_processes: int | None, profile: Path | None
) -> RunResult:
    if db == "postgresql":
        await _reset_pg(create=True)
        url = PG_URL
    else:
        url = f"sqlite+aiosqlite:///{work / 'bench.db'}"
    await _flush_redis()
    port = _free_port()
    env = _env(url, work, port, clean_processes)
    log = work / f"{db}.log"
    key = await asyncio.to_thread(_prepare, env)
    api = _start(["serve"], env, log)
    worker = _start(["worker"], env, log, profile)
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {key}"}
    peaks = Peaks()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as http:
            await _wait_up(http, base, api)
            async with http.post(
                f"{base}/v1/lists", json={"name": "bench", "default_region": "US"}, headers=headers
            ) as response:
                list_id = (await response.json())["id"]
            began = time.monotonic()
            async with http.post(
                f"{base}/v1/lists/{list_id}/imports?default_region=US",
                data=_file_chunks(path),
                headers={**headers, "Content-Type": "text/csv"},
            ) as response:
                created = await response.json()
                if response.status != 202:
                    raise RuntimeError(f"upload refused: {response.status} {created}")
            uploaded = time.monotonic() - began
            url = f"{base}/v1/imports/{created['id']}"
            job, staged_at = await _poll(http, url, headers, peaks, (api.pid, worker.pid), rows)
            seconds = time.monotonic() - began
        peaks.tree(worker.pid)
        peaks.read(api.pid)
        children = [pid for pid in peaks.kb if pid not in (api.pid, worker.pid)]
        return RunResult(
            db=db,
            rows=rows,
            seconds=seconds,
            upload_s=uploaded,
            publish_s=began + seconds - staged_at,
            job=job,
            api_mb=peaks.mb([api.pid]),
            worker_mb=peaks.mb([worker.pid]),
            children_mb=[peaks.mb([pid]) for pid in children],
        )
    finally:
        _kill_all()
        if db == "postgresql":
            await _reset_pg(create=False)


async def _poll(
    http: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    peaks: Peaks,
    pids: tuple[int, int],
    rows: int,
) -> tuple[dict[str, Any], float]:
    """Poll until the import ends; also when every row was staged (the publish step starts then)."""
    last_print = 0.0
    staged_at = 0.0
    while True:
        async with http.get(url, headers=headers) as response:
            job: dict[str, Any] = await response.json()
        peaks.read(pids[0])
        peaks.tree(pids[1])
        if not staged_at and job["rows_done"] >= rows:
            staged_at = time.monotonic()
        if job["state"] in ("completed", "failed"):
            if job["state"] == "failed":
                raise RuntimeError(f"import failed: {job['error']}")
            return job, staged_at or time.monotonic()
        if time.monotonic() - last_print > 5:
            last_print = time.monotonic()
            print(
                f"    {job['state']}: {job['rows_done']:,} rows, {job.get('rows_per_second')} rows/s",
                flush=True,
            )
        await asyncio.sleep(0.25)


# ---------------------------------------------------------------- the offline CLI


def offline_run(path: Path) -> tuple[float, dict[str, Any] | None, float, str]:
    probe = subprocess.run(
        [PYTHON, "-m", "dispatcher", "lists", "clean", "--help"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        return 0.0, None, 0.0, "skipped: `dispatcher lists clean` does not exist yet"
    began = time.monotonic()
    proc = subprocess.Popen(
        [PYTHON, "-m", "dispatcher", "lists", "clean", str(path), "--default-region", "US", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    _STARTED.append(proc)
    peaks = Peaks()
    while proc.poll() is None:
        peaks.tree(proc.pid)
        time.sleep(0.2)
    seconds = time.monotonic() - began
    out = proc.stdout.read() if proc.stdout else b""
    _STARTED.remove(proc)
    if proc.returncode != 0:
        return seconds, None, 0.0, f"failed with exit code {proc.returncode}"
    return seconds, json.loads(out), peaks.mb(list(peaks.kb)), ""


# ---------------------------------------------------------------- report


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def report(
    rows: int,
    size: int,
    ceilings: list[float],
    runs: list[RunResult],
    offline: tuple[float, dict[str, Any] | None, float, str],
) -> None:
    print(f"\nimport benchmark: {rows:,} rows, {size / 1e6:.1f} MB, {os.cpu_count()} cores")
    table = [
        [
            "path",
            "rows/s",
            "ratio",
            "seconds",
            "upload s",
            "publish s",
            "API MB",
            "worker MB",
            "cleaners MB",
            "tree MB",
        ]
    ]
    after = ["before the runs"] + [f"after {run.db}" for run in runs] + ["after offline"]
    for when, ceil in zip(after, ceilings, strict=False):
        table.append(
            [
                f"ceiling (phonenumbers+email-validator, 2 procs), {when}",
                f"{ceil:,.0f}",
                "1.00",
                f"{rows / ceil:.1f}",
                *[""] * 6,
            ]
        )
    for at, run in enumerate(runs):
        ceil = (ceilings[at] + ceilings[at + 1]) / 2  # the mean of the ceilings measured around this run
        tree = run.worker_mb + sum(run.children_mb)
        table.append(
            [
                f"HTTP API, {run.db}",
                f"{run.rate:,.0f}",
                f"{run.rate / ceil:.2f}",
                f"{run.seconds:.1f}",
                f"{run.upload_s:.1f}",
                f"{run.publish_s:.1f}",
                f"{run.api_mb:.0f}",
                f"{run.worker_mb:.0f}",
                "+".join(f"{mb:.0f}" for mb in run.children_mb),
                f"{tree:.0f}",
            ]
        )
    seconds, result, mb, note = offline
    if result is not None:
        ceil = (ceilings[-2] + ceilings[-1]) / 2
        table.append(
            [
                "offline `lists clean --json`",
                f"{rows / seconds:,.0f}",
                f"{rows / seconds / ceil:.2f}",
                f"{seconds:.1f}",
                *[""] * 5,
                f"{mb:.0f}",
            ]
        )
    print(_table(table))
    if note:
        print(f"offline `lists clean`: {note}")
    for run in runs:
        job = run.job
        total = job["accepted"] + job["rejected"] + job["duplicate"] + job["suppressed"]
        status = "ok" if total == job["rows_done"] == rows else "MISMATCH"
        print(
            f"{run.db}: rows_done={job['rows_done']:,} accepted={job['accepted']:,} "
            f"rejected={job['rejected']:,} duplicate={job['duplicate']:,} "
            f"suppressed={job['suppressed']:,} buckets {status}; "
            f"reasons {json.dumps(job['reasons'], sort_keys=True)}"
        )
    if result is not None:
        keys = ("rows", "accepted", "rejected", "duplicate", "suppressed")
        print(f"offline: {json.dumps({k: result.get(k) for k in keys})}")


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--db", choices=("postgresql", "sqlite", "both"), default="both")
    parser.add_argument("--file", type=Path, help="reuse this CSV instead of generating one")
    parser.add_argument("--clean-processes", type=int, help="DISPATCHER_CLEAN_PROCESSES for the worker")
    parser.add_argument("--skip-offline", action="store_true")
    parser.add_argument("--skip-ceiling", action="store_true", help="report ratios against --ceiling")
    parser.add_argument(
        "--ceiling", type=float, default=0.0, help="with --skip-ceiling: rows/s to compare to"
    )
    parser.add_argument("--profile", type=Path, help="run the worker under cProfile, writing PROFILE.<db>")
    return parser.parse_args()


def main() -> None:
    args = _parse()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    work = Path(tempfile.mkdtemp(prefix="dispatcher-bench-"))
    try:
        path = args.file or work / "contacts.csv"
        if args.file is None:
            began = time.monotonic()
            write_csv(path, args.rows)
            print(f"generated {args.rows:,} rows in {time.monotonic() - began:.1f} s: {path}", flush=True)
        rows = _count_rows(path)
        # The ceiling is measured before and after every path, and each path is compared with the mean of
        # the two around it: on this VM the same 2-process ceiling drifts by up to 30% within minutes.
        measure = (lambda: args.ceiling) if args.skip_ceiling else (lambda: ceiling(path))
        ceilings = [measure()]
        print(f"ceiling: {ceilings[-1]:,.0f} rows/s", flush=True)
        runs = []
        for db in ("postgresql", "sqlite") if args.db == "both" else (args.db,):
            print(f"HTTP run on {db}…", flush=True)
            profile = Path(f"{args.profile}.{db}") if args.profile else None
            runs.append(asyncio.run(http_run(db, path, rows, work, args.clean_processes, profile)))
            ceilings.append(measure())
            print(f"  {runs[-1].rate:,.0f} rows/s; ceiling after: {ceilings[-1]:,.0f} rows/s", flush=True)
        offline = (0.0, None, 0.0, "skipped (--skip-offline)") if args.skip_offline else offline_run(path)
        if not args.skip_offline:
            ceilings.append(measure())
        report(rows, path.stat().st_size, ceilings, runs, offline)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    finally:
        _kill_all()
        shutil.rmtree(work, ignore_errors=True)


def _count_rows(path: Path) -> int:
    """Data rows as the importer counts them (the generator writes no multi-line records)."""
    with path.open("rb") as handle:
        return sum(1 for line in _lines(handle) if line.strip()) - 1


def _lines(handle: Any) -> Iterator[bytes]:
    yield from handle


if __name__ == "__main__":
    main()
