"""Save-time checks of a parsed template, and the rewrite that routes loops and ``~`` through the budget.

The checks work on an *allow-list* of syntax: output, ``if``, ``for``, ``with``, ``set name = value``,
literals, arithmetic, comparisons, and the filters/tests of this package. Everything else is refused with
the line it is on, so a customer learns about it when saving, not when 40,000 messages fail:

* calls of any kind (``x.format(...)``, ``range(...)``, ``loop.cycle(...)``): nothing in a message needs to
  call a function, and without calls the classic escapes (``__subclasses__()``, ``os.popen(...)``) are moot;
* ``extends``/``include``/``import``/``macro``/``call``: there is no loader, and macros bring recursion;
* ``{% filter %}`` blocks and block ``{% set %}``: their output is buffered where the output limit cannot
  see it;
* ``{% autoescape %}``: escaping of HTML parts is not the template's decision;
* ``**`` and printf-style ``'...' % x``; multiplication by a constant over :data:`MAX_CONSTANT_FACTOR`;
* names and attributes starting with ``_`` or naming interpreter internals (``mro``, ``gi_frame``, ...);
* nesting deeper than :data:`MAX_DEPTH` (jinja's parser and Python's compiler recurse on it).

The runtime sandbox re-checks what it can (a string built from pieces can still name ``__class__``); these
checks exist to give an early, precise answer, not as the only wall.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Final

from jinja2 import nodes
from jinja2.visitor import NodeTransformer

from dispatcher.core.sandbox import CONCAT_GUARD, LOOP_GUARD, SLICE_GUARD

__all__ = ["ALLOWED_TESTS", "MAX_CONSTANT_FACTOR", "MAX_DEPTH", "UnsafeTemplate", "check", "guard"]

MAX_DEPTH: Final = 48
MAX_CONSTANT_FACTOR: Final = 10_000

ALLOWED_TESTS: Final = frozenset(
    {"defined", "undefined", "none", "number", "string", "boolean", "true", "false"}
    | {"even", "odd", "divisibleby", "eq", "ne", "lt", "le", "gt", "ge", "in"}
)

_ALLOWED_NODES: Final = (
    nodes.Template, nodes.Output, nodes.TemplateData, nodes.If, nodes.For, nodes.With, nodes.Assign,
    nodes.Name, nodes.Const, nodes.Tuple, nodes.List, nodes.Dict, nodes.Pair, nodes.Keyword,
    nodes.CondExpr, nodes.Filter, nodes.Test, nodes.Getitem, nodes.Getattr, nodes.Slice, nodes.Concat,
    nodes.Compare, nodes.Operand, nodes.Mul, nodes.Div, nodes.FloorDiv, nodes.Add, nodes.Sub, nodes.Mod,
    nodes.And, nodes.Or, nodes.Not, nodes.Neg, nodes.Pos,
)  # fmt: skip

_REFUSALS: Final[Mapping[type[nodes.Node], str]] = {
    nodes.Call: "calling functions or methods is not allowed; use filters",
    nodes.Extends: "{% extends %} is not allowed",
    nodes.Block: "{% block %} is not allowed",
    nodes.Include: "{% include %} is not allowed",
    nodes.Import: "{% import %} is not allowed",
    nodes.FromImport: "{% from ... import %} is not allowed",
    nodes.Macro: "{% macro %} is not allowed",
    nodes.CallBlock: "{% call %} is not allowed",
    nodes.FilterBlock: "{% filter %} blocks are not allowed; apply the filter to a value",
    nodes.AssignBlock: "block {% set %} is not allowed; use {% set name = value %}",
    nodes.NSRef: "assigning to an attribute is not allowed",
    nodes.Pow: "the ** operator is not allowed",
    nodes.Scope: "{% autoescape %} is not allowed",
    nodes.ScopedEvalContextModifier: "{% autoescape %} is not allowed",
    nodes.EvalContextModifier: "{% autoescape %} is not allowed",
}

# Attribute names that reach interpreter internals without a leading underscore (Python 2 era and frames).
_INTERNAL_NAMES: Final = frozenset(
    {"mro", "format", "format_map", "func_globals", "func_code", "func_closure", "func_defaults"}
    | {"gi_frame", "gi_code", "gi_yieldfrom", "cr_frame", "cr_code", "cr_await", "ag_frame", "ag_code"}
    | {"f_globals", "f_locals", "f_builtins", "f_back", "f_code", "tb_frame", "tb_next", "co_code"}
    | {"im_func", "im_self", "im_class", "self", "caller", "varargs", "kwargs"}
)


class UnsafeTemplate(Exception):
    """A construct the template may not use, with the line it is on."""

    def __init__(self, message: str, lineno: int) -> None:
        super().__init__(message)
        self.message = message
        self.lineno = lineno


def _is_internal(name: object) -> bool:
    return isinstance(name, str) and (name.startswith("_") or name in _INTERNAL_NAMES)


def _large_constant(node: nodes.Node) -> bool:
    return isinstance(node, nodes.Const) and type(node.value) is int and abs(node.value) > MAX_CONSTANT_FACTOR


def _refusal(node: nodes.Node, allowed_filters: frozenset[str]) -> str | None:
    """Why ``node`` is refused, or None when it is allowed."""
    if not isinstance(node, _ALLOWED_NODES):
        return _REFUSALS.get(type(node), f"{type(node).__name__} is not allowed in a message template")
    if isinstance(node, nodes.Name) and _is_internal(node.name):
        return "access to internal names is not allowed"
    if isinstance(node, nodes.Getattr) and _is_internal(node.attr):
        return "access to internal names is not allowed"
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and _is_internal(node.arg.value):
        return "access to internal names is not allowed"
    if isinstance(node, nodes.Filter | nodes.Test):
        return _filter_refusal(node, allowed_filters)
    if isinstance(node, nodes.Mul) and (_large_constant(node.left) or _large_constant(node.right)):
        return f"multiplying by a constant over {MAX_CONSTANT_FACTOR} is not allowed"
    if isinstance(node, nodes.Mod) and isinstance(getattr(node.left, "value", None), str):
        return "printf-style formatting is not allowed; use filters"
    return None


def _filter_refusal(node: nodes.Filter | nodes.Test, allowed_filters: frozenset[str]) -> str | None:
    kind, allowed = ("filter", allowed_filters) if isinstance(node, nodes.Filter) else ("test", ALLOWED_TESTS)
    if node.name not in allowed:
        return f"the {kind} {node.name!r} is not allowed; allowed: {', '.join(sorted(allowed))}"
    if node.dyn_args is not None or node.dyn_kwargs is not None:
        return f"*args and **kwargs are not allowed in a {kind}"
    return None


def _walk(tree: nodes.Node) -> Iterator[tuple[nodes.Node, int]]:
    """Every node with its depth, without recursion (the tree may be as deep as the parser allowed)."""
    stack: list[tuple[nodes.Node, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        yield node, depth
        stack.extend((child, depth + 1) for child in node.iter_child_nodes())


def _line(node: nodes.Node) -> int:
    """The node's line, or its first descendant's: the ``Scope`` of ``{% autoescape %}`` has none."""
    for candidate in (node, *node.find_all(nodes.Node)):
        if candidate.lineno:
            return int(candidate.lineno)
    return 1


def check(tree: nodes.Template, allowed_filters: frozenset[str]) -> None:
    """Raise :class:`UnsafeTemplate` for the first refused construct, in source order."""
    problems: list[tuple[int, str]] = []
    for node, depth in _walk(tree):
        reason = "the template nests too deeply" if depth > MAX_DEPTH else _refusal(node, allowed_filters)
        if reason is not None:
            problems.append((_line(node), reason))
    if problems:
        lineno, reason = min(problems, key=lambda problem: problem[0])
        raise UnsafeTemplate(reason, lineno)


def _guarded(value: nodes.Node, name: str, args: list[Any], lineno: int) -> nodes.Filter:
    return nodes.Filter(value, name, args, [], None, None, lineno=lineno)


class _Guard(NodeTransformer):
    """Routes loop iterables, slices and ``a ~ b ~ c`` through the guard filters of ``sandbox``."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _guarded(node.iter, LOOP_GUARD, [], node.lineno)
        return node

    def visit_Getitem(self, node: nodes.Getitem) -> nodes.Node:
        self.generic_visit(node)
        if isinstance(node.arg, nodes.Slice):
            return _guarded(node, SLICE_GUARD, [], node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        result: nodes.Node = node.nodes[0]
        for operand in node.nodes[1:]:  # pairwise: the operands are never all alive at once
            result = _guarded(result, CONCAT_GUARD, [operand], node.lineno)
        return result


def guard(tree: nodes.Template) -> nodes.Template:
    """Rewrite a *checked* tree in place so its loops and concatenations are charged to the budget."""
    result = _Guard().visit(tree)
    assert isinstance(result, nodes.Template)
    return result
