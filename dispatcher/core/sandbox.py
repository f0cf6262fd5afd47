"""The jinja2 sandbox that bounds what a template may cost, not only what it may touch.

jinja2's own sandbox stops attribute escapes (``__class__``, ``__globals__``) but happily evaluates
``'x' * 2e8``: a template saved by one customer could stall or exhaust a worker shared by everyone. Here every
way a template can make something big or spin goes through a per-render :class:`Budget`:

* operators that can grow a value (``*``, ``+``, ``**``, ``%``) are intercepted and their result size is
  computed *before* the operation runs; list arithmetic and printf-style formatting are refused outright;
* ``~`` concatenation, slices and ``for`` loops are rewritten at compile time (see ``template_checks``) to go
  through :func:`concat_guard`, :func:`slice_guard` and :func:`loop_guard`, which charge sizes and count
  iterations;
* filters charge the length of what they produce (:func:`charge`);
* the caller counts output characters as chunks stream out.

The budget travels in a :class:`~contextvars.ContextVar` because the sandbox hooks (``call_binop``,
``getitem``, plain filters) receive no per-render object of ours; a context variable is per thread and per
task, so concurrent renders never share one. ``time.thread_time`` (CPU time of this thread) is read here as
a *measurement* of elapsed work, not as "now": it never reaches a result, only decides whether to stop.
Wall-clock time would fail trivial templates whenever a loaded machine left the worker descheduled for
a quarter of a second (seen in bench/dispatch.py: 6 of 100,000 one-line SMS).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sized
from contextvars import ContextVar
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Final, Literal

from jinja2 import Undefined, pass_context
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace

__all__ = [
    "CONCAT_GUARD",
    "LOOP_GUARD",
    "MAX_INT_BITS",
    "SLICE_GUARD",
    "BoundedSandbox",
    "Budget",
    "RenderLimitError",
    "RenderLimits",
    "activate",
    "charge",
    "concat_guard",
    "finalize",
    "loop_guard",
    "printable",
    "restore",
    "slice_guard",
]

LOOP_GUARD: Final = "_loop_guard"
CONCAT_GUARD: Final = "_concat_guard"
SLICE_GUARD: Final = "_slice_guard"
MAX_INT_BITS: Final = 1024  # about 308 decimal digits: far beyond any price or count, far below a CPU trap

LimitReason = Literal["output_too_large", "render_timeout", "unsafe"]
_CONTAINERS: Final = (list, tuple, dict, set, frozenset, range, Namespace)


@dataclass(frozen=True, slots=True)
class RenderLimits:
    """What one render of one part may cost; chosen per part because an SMS and an HTML body differ 60x.

    ``max_value_chars`` bounds any single string an operator or filter produces (variables supplied by the
    caller are not charged); ``max_work_chars`` bounds their sum over the render, so repeating a bounded
    operation in a loop cannot add up to gigabytes either.
    """

    max_output_chars: int
    max_value_chars: int
    max_work_chars: int
    max_source_chars: int
    max_loop_iterations: int = 10_000
    max_seconds: float = 0.25


class RenderLimitError(Exception):
    """Raised inside a render when a budget is exhausted; the renderer turns it into a TemplateError."""

    def __init__(self, reason: LimitReason, message: str) -> None:
        super().__init__(message)
        self.reason: LimitReason = reason
        self.message = message


class _CpuReading(threading.local):
    wall = -1.0
    cpu = 0.0


_LAST_CPU = _CpuReading()
_CPU_READING_FRESH_S = 0.005


def _thread_cpu() -> float:
    """This thread's CPU time, read at most every few milliseconds.

    A render starts thousands of times a second and the clock read is a system call; a reading up to 5 ms
    old is at most 5 ms of CPU earlier than the truth, so a budget measured from it ends at most that much
    sooner."""
    now = time.monotonic()
    reading = _LAST_CPU
    if now - reading.wall > _CPU_READING_FRESH_S:
        reading.wall, reading.cpu = now, time.thread_time()
    return reading.cpu


class Budget:
    """The remaining allowance of one render: work characters, loop iterations and a deadline."""

    __slots__ = ("cpu_deadline", "deadline", "iterations_left", "limits", "work_left")

    def __init__(self, limits: RenderLimits) -> None:
        self.limits = limits
        self.work_left = limits.max_work_chars
        self.iterations_left = limits.max_loop_iterations
        # a thread cannot use more CPU than time passes: the cheap wall clock screens, CPU time decides
        self.deadline = time.monotonic() + limits.max_seconds
        self.cpu_deadline = _thread_cpu() + limits.max_seconds

    def spend(self, size: int) -> None:
        """Account for a value of ``size`` characters about to be built; refuse it if over the limits."""
        if size > self.limits.max_value_chars:
            raise RenderLimitError(
                "output_too_large",
                f"a value of {size} characters exceeds the limit of {self.limits.max_value_chars}",
            )
        self.work_left -= size
        if self.work_left < 0:
            raise RenderLimitError("render_timeout", "the template builds too much text")
        self.check_time()

    def check_time(self) -> None:
        if time.monotonic() > self.deadline and time.thread_time() > self.cpu_deadline:
            raise RenderLimitError("render_timeout", f"rendering took over {self.limits.max_seconds} s")

    def iterate(self, iterable: Iterable[Any]) -> Iterator[Any]:
        """Yield from ``iterable``, counting iterations across every loop of the render."""
        for item in iterable:
            self.iterations_left -= 1
            if self.iterations_left < 0:
                raise RenderLimitError(
                    "render_timeout", f"loops ran over {self.limits.max_loop_iterations} iterations"
                )
            self.check_time()
            yield item


_ACTIVE: ContextVar[Budget | None] = ContextVar("dispatcher_render_budget", default=None)


def activate(budget: Budget | None) -> Any:
    """Make ``budget`` the one charged by this thread/task; returns the token to pass to :func:`restore`."""
    return _ACTIVE.set(budget)


def restore(token: Any) -> None:
    _ACTIVE.reset(token)


def charge(size: int) -> None:
    """Charge a filter result to the active render; a no-op while jinja folds constants at compile time."""
    budget = _ACTIVE.get()
    if budget is not None:
        budget.spend(size)


def _active() -> Budget:
    budget = _ACTIVE.get()
    if budget is None:  # only reachable if someone renders the jinja template behind our back
        raise RenderLimitError("unsafe", "templates must be rendered through dispatcher.core.rendering")
    return budget


def printable(value: Any) -> Any:
    """Refuse to turn containers and callables into text: their repr leaks internals or explodes in size.

    A list of 100 references to one 16 KiB string is small in memory but 1.6 MB once printed.
    """
    if isinstance(value, str | Undefined):
        return value
    if isinstance(value, _CONTAINERS):
        raise TypeError(f"a {type(value).__name__} cannot be printed; loop over it or pick an item")
    if callable(value) or isinstance(value, ModuleType):
        raise SecurityError(f"a {type(value).__name__} object cannot be printed")
    return value


def finalize(value: Any) -> Any:
    """Output hook: ``None`` prints as nothing (a missing attribute must not show "None" to a customer)."""
    if value is None:
        return ""
    return printable(value)


@pass_context
def loop_guard(context: Context, iterable: Any) -> Iterator[Any]:
    """Wraps the iterable of every ``{% for %}``; pass_context keeps jinja from running it at compile time."""
    return _active().iterate(iterable)


@pass_context
def concat_guard(context: Context, left: Any, right: Any) -> str:
    """``left ~ right`` with its size charged first; applied pairwise so no operand list is ever built.

    The result is a plain string: no value in this environment is ever ``Markup`` (there is no ``safe``
    filter), so an HTML part escapes the whole concatenation when it is output.
    """
    budget = _active()
    head, tail = str(printable(left)), str(printable(right))
    budget.spend(len(head) + len(tail))
    return head + tail


@pass_context
def slice_guard(context: Context, value: Any) -> Any:
    """Charges ``s[a:b]`` (jinja compiles slices to plain Python subscripts, bypassing ``getitem``)."""
    if isinstance(value, Sized):
        _active().spend(len(value))
    return value


def _sequence_size(operator: str, left: Any, right: Any) -> int | None:
    """Length of the string ``left <operator> right`` would build, or None when it builds no string."""
    if operator == "*":
        if isinstance(left, str) and isinstance(right, int):
            return len(left) * max(right, 0)
        if isinstance(right, str) and isinstance(left, int):
            return len(right) * max(left, 0)
    elif operator == "+" and isinstance(left, str) and isinstance(right, str):
        return len(left) + len(right)
    return None


def _too_many_bits(left: int, right: int) -> bool:
    """Whether ``left * right`` would exceed :data:`MAX_INT_BITS` (a product has at most the sum of bits)."""
    return left.bit_length() + right.bit_length() > MAX_INT_BITS


def _refuse_unsafe_binop(operator: str, left: Any, right: Any) -> None:
    if operator in ("*", "+") and (isinstance(left, _CONTAINERS) or isinstance(right, _CONTAINERS)):
        raise RenderLimitError("unsafe", "list arithmetic is not allowed")
    if operator == "%" and isinstance(left, str):
        raise RenderLimitError("unsafe", "printf-style formatting is not allowed; use filters")
    if operator == "**":
        raise RenderLimitError("unsafe", "the ** operator is not allowed")
    if operator == "*" and isinstance(left, int) and isinstance(right, int) and _too_many_bits(left, right):
        raise RenderLimitError("output_too_large", "the product is too large a number")


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """An immutable sandbox whose growth operators are checked before they run.

    Being in ``intercepted_binops`` also stops jinja from constant-folding these operators at compile
    time, which would otherwise evaluate ``'x' * 10000000000`` while *saving* the template.
    """

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _refuse_unsafe_binop(operator, left, right)
        size = _sequence_size(operator, left, right)
        if size is not None:
            _active().spend(size)
        return self.binop_table[operator](left, right)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        """No callables at all: templates cannot call anything, and a bound method's repr leaks internals."""
        if callable(value) or isinstance(value, ModuleType | type):
            return False
        return super().is_safe_attribute(obj, attr, value)

    def wrap_str_format(self, value: Any) -> None:
        """Disable the sandbox's special case that hands out a callable ``str.format``."""
        return None

    def getattr(self, obj: Any, attribute: str) -> Any:
        """``contact.items`` must read the "items" column, not find ``dict.items`` and call it unsafe."""
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)
