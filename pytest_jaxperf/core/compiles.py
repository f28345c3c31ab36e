"""The compile watch: count the compiles of one function, and say why each one after the first happened.

Compiles are counted through jax's own monitoring events (``/jax/core/compile/backend_compile_duration``),
filtered by the function's name: a global count would include every eager op (``jnp.ones`` compiles
``jit(broadcast_in_dim)``). The backend-compile event also fires for compiles that do not re-trace, such
as an argument moved to another device, which trace counters (chex, equinox) miss.

Why a call compiled is told twice: by this package's own diff of the call's abstract signature against
the closest earlier compiled one (always available), and by JAX's ``explain_cache_misses`` text, kept as a
hint (JAX stays silent for device changes and for functions defined in installed packages).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
import threading
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jax

from .signature import Leaf, Signature, describe_call, explain_difference

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
LOWERING_EVENT = "/jax/core/compile/jaxpr_to_mlir_module_duration"
TRACE_EVENT = "/jax/core/compile/jaxpr_trace_duration"
_WATCHED_EVENTS = frozenset({BACKEND_COMPILE_EVENT, LOWERING_EVENT, TRACE_EVENT})

#: How many JAX explanation lines to keep per compile: through ``nnx.jit`` a GraphDef diff runs to KBs.
_HINT_LINES = 5
_RING_SIZE = 4096


class RecompileError(AssertionError):
    """A watched function compiled more often than it was allowed to."""


@dataclass(frozen=True)
class CompileEvent:
    """One compile-stage event reported by jax.monitoring."""

    event: str
    fun_name: str
    seconds: float


@dataclass(frozen=True)
class Compile:
    """One compile of a watched function, with what caused it."""

    number: int
    """1 for the function's first compile, 2 for the next, …"""
    call: int
    """Which call of the watched function (1-based) compiled."""
    seconds: float
    """Trace + lowering + backend compile time of that call."""
    signature: Signature
    reasons: tuple[str, ...]
    """What changed against the closest earlier compiled call (``first compile`` for the first)."""
    jax_hint: str = ""
    """JAX's own cache-miss explanation, when JAX gave one."""


class _EventLog:
    """Process-wide ring of compile events and JAX cache-miss messages, installed once.

    One listener for the whole process, never removed: it costs nothing until something compiles, and
    ``unregister_*`` only exists in recent jax releases.
    """

    def __init__(self) -> None:
        self.events: deque[CompileEvent] = deque(maxlen=_RING_SIZE)
        self.count = 0
        self.hints: deque[str] = deque(maxlen=_RING_SIZE)
        self.hint_count = 0
        self.quiet = 0

    def on_duration(self, event: str, duration_secs: float, **kwargs: str | int) -> None:
        # **kwargs: jax passes fun_name (since 0.6.1) and may add more keywords.
        if event in _WATCHED_EVENTS:
            self.events.append(CompileEvent(event, str(kwargs.get("fun_name", "")), duration_secs))
            self.count += 1

    def events_since(self, count: int) -> list[CompileEvent]:
        new = self.count - count
        return list(self.events)[-new:] if new > 0 else []

    def backend_compiles_since(self, count: int) -> list[CompileEvent]:
        """The XLA compiles (not traces or lowerings) logged since ``count``."""
        return [e for e in self.events_since(count) if e.event == BACKEND_COMPILE_EVENT]

    def hints_since(self, count: int) -> list[str]:
        new = self.hint_count - count
        return list(self.hints)[-new:] if new > 0 else []


#: The logger JAX writes its "TRACING CACHE MISS" explanations to.
_EXPLAIN_LOGGER = "jax._src.interpreters.partial_eval"


class _HintFilter(logging.Filter):
    """Keeps JAX's cache-miss explanations as hints.

    While jaxperf itself switched the explanations on (``quiet``), it also stops them from reaching the
    log: the failure message carries them already, and the user did not ask for them.
    """

    def __init__(self, log: _EventLog) -> None:
        super().__init__()
        self._log = log

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "CACHE MISS" not in message:
            return True
        self._log.hints.append(message)
        self._log.hint_count += 1
        return self._log.quiet == 0


_install_lock = threading.Lock()
_event_log: _EventLog | None = None


def event_log() -> _EventLog:
    """The process-wide compile event log, installing its listener on first use."""
    global _event_log
    with _install_lock:
        if _event_log is None:
            log = _EventLog()
            jax.monitoring.register_event_duration_secs_listener(log.on_duration)
            logging.getLogger(_EXPLAIN_LOGGER).addFilter(_HintFilter(log))
            _event_log = log
        return _event_log


def function_name(fn: Callable[..., Any]) -> str:
    """The name jax reports compiles of ``fn`` under (``f`` for ``jax.jit(f)``)."""
    if isinstance(fn, WatchedFunction):
        return fn.name
    for candidate in (fn, getattr(fn, "__wrapped__", None), getattr(fn, "fun", None)):
        name = getattr(candidate, "__name__", None)
        if isinstance(name, str):
            return name
    return type(fn).__name__


def _is_event_of(event: CompileEvent, name: str) -> bool:
    return event.fun_name in (name, f"jit({name})")


@contextlib.contextmanager
def explaining_cache_misses() -> Iterator[None]:
    """Turn on JAX's cache-miss explanations for the block (a no-op when they are already on).

    Explanations jaxperf switched on are kept as hints and kept out of the log.
    """
    if getattr(jax.config, "jax_explain_cache_misses", False):
        yield
        return
    log = event_log()
    log.quiet += 1
    try:
        with jax.explain_cache_misses(True):
            yield
    finally:
        log.quiet -= 1


class WatchedFunction:
    """A callable that records every compile of the function it wraps, and why it happened.

    Call it exactly as the wrapped function. ``compiles`` lists each compile with its cause; with
    ``max_compiles`` set, the call that compiles once too often raises :class:`RecompileError`.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        max_compiles: int | None = None,
        signature_of: Callable[..., Any] | None = None,
        explain: bool = False,
    ) -> None:
        self._fn = fn
        self.name = name or function_name(fn)
        self.max_compiles = max_compiles
        # The function whose parameters name the arguments in explanations (the model's __call__, say).
        self._signature_of: Callable[..., Any] = signature_of or getattr(fn, "__wrapped__", None) or fn
        self._explain = explain
        self._log = event_log()
        self.calls = 0
        self.compiles: list[Compile] = []
        self.violation: RecompileError | None = None
        functools.update_wrapper(self, fn, updated=())

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        log = self._log
        events_before, hints_before = log.count, log.hint_count
        # A module the call may change (nnx.jit writes its new structure back) is described as passed,
        # before the call; plain arrays cannot change, and are described only when a compile happened.
        passed = describe_call(self._signature_of, args, kwargs) if _holds_module(args, kwargs) else None
        if self._explain:
            with explaining_cache_misses():
                out = self._fn(*args, **kwargs)
        else:
            out = self._fn(*args, **kwargs)
        self.calls += 1
        if log.count != events_before:
            self._record(args, kwargs, events_before, hints_before, passed)
        return out

    def _record(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        events_before: int,
        hints_before: int,
        passed: dict[str, Leaf] | None,
    ) -> None:
        __tracebackhide__ = True
        events = [e for e in self._log.events_since(events_before) if _is_event_of(e, self.name)]
        backend_compiles = [e for e in events if e.event == BACKEND_COMPILE_EVENT]
        if not backend_compiles:
            return
        signature = passed if passed is not None else describe_call(self._signature_of, args, kwargs)
        reasons = tuple(explain_difference(signature, [c.signature for c in self.compiles]))
        hint = _matching_hint(self._log.hints_since(hints_before), self.name)
        seconds = sum(e.seconds for e in events) / len(backend_compiles)
        for _ in backend_compiles:
            self.compiles.append(
                Compile(len(self.compiles) + 1, self.calls, seconds, signature, reasons, hint)
            )
        if self.max_compiles is not None and len(self.compiles) > self.max_compiles:
            self.violation = RecompileError(format_compiles(self.name, self.compiles, self.max_compiles))
            raise self.violation

    @property
    def compile_seconds(self) -> float:
        """Total time spent compiling this function so far."""
        return sum(c.seconds for c in self.compiles)


def _holds_module(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether an NNX module is among the call's arguments (flax never imported for the check)."""
    nnx = sys.modules.get("flax.nnx")
    return nnx is not None and any(isinstance(a, nnx.Module) for a in (*args, *kwargs.values()))


def watch_compiles(
    fn: Callable[..., Any], *, max_compiles: int | None = None, explain: bool = False
) -> WatchedFunction:
    """Wrap a (jitted) function so that every compile is recorded with its cause.

    ``watch_compiles(jax.jit(f))(x)`` behaves like ``jax.jit(f)(x)``; afterwards ``.compiles`` lists each
    compile and why it happened (shape, dtype, weak type, static value, keyword versus default, device or
    sharding). With ``max_compiles``, the call that exceeds it raises :class:`RecompileError`.

    The watch costs well under a microsecond per warm call of arrays; a call that passes an NNX module
    (to ``nnx.jit``, which walks it anyway) describes the module before each call, so that a structure
    the call itself changes is seen as it was passed. ``explain=True`` also captures JAX's own
    cache-miss explanation as a hint, by switching it on around each call, which costs about 5 µs a
    call; inside a :class:`CompileWatch` block or the ``jaxperf`` fixture it is on anyway, for free.
    """
    return WatchedFunction(fn, max_compiles=max_compiles, explain=explain)


class CompileWatch:
    """A block in which compiles are counted: ``with CompileWatch(f, g, max_compiles=0): ...``.

    With functions given, only their compiles count; with none, every compile in the block does (eager
    ops included). On leaving the block, more than ``max_compiles`` compiles raise
    :class:`RecompileError` listing each compile, with causes for :class:`WatchedFunction` members and
    JAX's explanation for the others.
    """

    def __init__(self, *functions: Callable[..., Any], max_compiles: int | None = 0) -> None:
        self.functions = functions
        self.max_compiles = max_compiles
        self.events: list[CompileEvent] = []
        self.hints: list[str] = []
        self._names = {function_name(f) for f in functions}
        self._exit_stack = contextlib.ExitStack()

    def __enter__(self) -> CompileWatch:
        self._log = event_log()
        self._events_before, self._hints_before = self._log.count, self._log.hint_count
        self._compiles_before = {
            id(f): len(f.compiles) for f in self.functions if isinstance(f, WatchedFunction)
        }
        self._exit_stack.enter_context(explaining_cache_misses())
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._exit_stack.close()
        self.events = [
            e
            for e in self._log.backend_compiles_since(self._events_before)
            if not self._names or any(_is_event_of(e, n) for n in self._names)
        ]
        self.hints = self._log.hints_since(self._hints_before)
        if exc_type is None and self.max_compiles is not None and self.count > self.max_compiles:
            raise RecompileError(self.describe())

    @property
    def count(self) -> int:
        """Backend compiles observed in the block."""
        return len(self.events)

    def describe(self) -> str:
        """Every compile in the block, with its cause where it is known."""
        what = ", ".join(sorted(self._names)) if self._names else "anything"
        lines = [
            f"{self.count} compile(s) of {what} inside a no-recompile block (allowed: {self.max_compiles}):"
        ]
        explained: set[str] = set()
        for fn in self.functions:
            if isinstance(fn, WatchedFunction):
                new = fn.compiles[self._compiles_before.get(id(fn), 0) :]
                if new:
                    explained.add(fn.name)
                    lines.extend(_compile_lines(fn.name, new))
        for event in self.events:
            name = event.fun_name.removeprefix("jit(").removesuffix(")")
            if name in explained:
                continue
            lines.append(f"  {event.fun_name} compiled ({event.seconds:.3f} s)")
            hint = _matching_hint(self.hints, name)
            if hint:
                lines.append(_indent(f"JAX's own explanation: {hint}", 6))
        return "\n".join(lines)


def _matching_hint(hints: list[str], name: str) -> str:
    for hint in hints:
        if f"for {name} defined" in hint or f"{name} id=" in hint:
            return _trim(hint)
    return ""


def _trim(text: str) -> str:
    # Keep what JAX found different; drop its "TRACING CACHE MISS at <call site>" and "for f defined
    # at" lines, which point into jaxperf's wrapper rather than at the user's code.
    lines = [
        line.strip()
        for line in text.splitlines()[1:]
        if not line.strip().startswith(("for ", "all previously seen"))
    ]
    kept = [line[:160] for line in lines[:_HINT_LINES]]
    if len(lines) > _HINT_LINES:
        kept.append(f"... ({len(lines) - _HINT_LINES} more lines)")
    return "\n".join(kept)


def _indent(text: str, spaces: int) -> str:
    return "\n".join(" " * spaces + line for line in text.splitlines())


def _signature_summary(signature: Signature, limit: int = 6) -> str:
    parts = [f"{path}: {leaf.describe()}" for path, leaf in signature.items() if leaf.kind != "passing"]
    if len(parts) > limit:
        parts = [*parts[:limit], f"... {len(parts) - limit} more"]
    return "; ".join(parts) or "no arguments"


def _compile_lines(name: str, compiles: list[Compile]) -> list[str]:
    lines = []
    for c in compiles:
        lines.append(f"  compile {c.number} of {name}, at call {c.call} ({c.seconds:.3f} s):")
        if c.reasons == ("first compile",):
            lines.append(f"      first compile, with {_signature_summary(c.signature)}")
        else:
            lines.extend(f"      {reason}" for reason in c.reasons)
        if c.jax_hint and c.number > 1:
            lines.append(_indent(f"JAX's own explanation (closest earlier key): {c.jax_hint}", 6))
    return lines


def format_compiles(name: str, compiles: list[Compile], max_compiles: int) -> str:
    """The failure message for a function that compiled more than ``max_compiles`` times."""
    header = (
        f"jit({name}) compiled {len(compiles)} times, more than max_compiles={max_compiles}; "
        "what changed at each compile:"
    )
    return "\n".join([header, *_compile_lines(name, compiles)])


__all__ = [
    "Compile",
    "CompileEvent",
    "CompileWatch",
    "Leaf",
    "RecompileError",
    "WatchedFunction",
    "event_log",
    "format_compiles",
    "function_name",
    "watch_compiles",
]
