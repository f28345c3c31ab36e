"""Failures a person can act on: a model that ran out of memory, a variant that cannot run here.

Around running a model (:func:`explained`), an error goes to an explainer: it returns the failure
message, naming the device, the function, the variant, the inputs and (for memory) the compiled
program's breakdown, or re-raises the error when it is the user's own, for pytest to report as any
exception.
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
import sysconfig
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax

from .core import memory
from .core.compiles import RecompileError
from .core.memory import MemoryBreakdown, is_out_of_memory
from .core.placement import UnsplittableBatch
from .core.signature import describe_inputs
from .core.wrap import ModelStructureError
from .errors import BaselineError, CaseFailed, CaseUnavailable, PerformanceRegression
from .units import BYTE_UNITS, format_bytes

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from .core.wrap import WrappedModel
    from .specs import Variant

_SIZE = r"([0-9.]+)\s*([KMGT]i?B|bytes|B)?"
_TRIED = re.compile(r"(?:allocat\w*|tried to allocate)\s+" + _SIZE, re.IGNORECASE)
_LIMIT = re.compile(r"(?:limit|capacity|memory limit)\D{0,20}" + _SIZE, re.IGNORECASE)


#: What a backend or library says when it lacks an operation for a dtype (not Python's "unsupported
#: operand type(s)", a model's own bug).
_LACKING = re.compile(
    r"not implemented|unimplemented|not supported|unsupported(?! operand)|does not support|no kernel",
    re.IGNORECASE,
)
#: XLA's errors at compile or run time (jax.errors.JaxRuntimeError where this jax names it).
_RUNTIME_ERRORS: tuple[type[BaseException], ...] = tuple(
    t for t in (getattr(jax.errors, "JaxRuntimeError", None),) if isinstance(t, type)
)
_PLUGIN_DIRECTORY = str(Path(__file__).resolve().parent) + os.sep


def innermost_frame(error: BaseException) -> traceback.FrameSummary | None:
    """The innermost frame of ``error``'s traceback in the plugin's code or the model's (installed
    packages and Python's own modules skipped): where it was raised, as a person reads it."""
    standard = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib")}
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        if frame.filename.startswith("<"):
            continue
        resolved = str(Path(frame.filename).resolve())
        if resolved.startswith(_PLUGIN_DIRECTORY):  # first: the plugin may be installed in site-packages
            return frame
        if {"site-packages", "dist-packages"} & set(Path(resolved).parts):
            continue
        if any(resolved.startswith(directory) for directory in standard):
            continue
        return frame
    return None


def _parse_size(number: str, unit: str | None) -> float:
    return float(number) * BYTE_UNITS.get((unit or "").lower(), 1)  # "bytes": 1


def out_of_memory_message(
    error: BaseException,
    *,
    device: str,
    function: str,
    variant: str,
    inputs: str,
    breakdown: MemoryBreakdown | None,
) -> str:
    """``out of memory on cuda:0: tried to allocate 157.3 GiB (limit 104.9 GiB) in jit_decode; ...``."""
    text = str(error)
    head = f"out of memory on {device}"
    tried = _TRIED.search(text)
    if isinstance(error, MemoryError):
        head = "out of host memory (MemoryError)"
    elif tried:
        head += f": tried to allocate {format_bytes(_parse_size(*tried.groups()))}"
        limit = _LIMIT.search(text)
        if limit:
            head += f" (limit {format_bytes(_parse_size(*limit.groups()))})"
    parts = [f"{head} in {function}", f"variant {variant}", f"inputs {inputs}"]
    if breakdown is not None:
        parts.append(f"compiled needs: {breakdown.describe()}")
    first_line = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return "; ".join(parts) + f"\n{type(error).__name__}: {first_line[:300]}"


def out_of_memory_failure(
    error: BaseException,
    variant: Variant,
    function: str,
    inputs: tuple[Any, ...],
    breakdown: MemoryBreakdown | None,
) -> str:
    """The out-of-memory message for ``function`` run on ``inputs`` on the first device."""
    device = jax.devices()[0]
    return out_of_memory_message(
        error,
        device=f"{device.platform}:{device.id}",
        function=function,
        variant=variant.id,
        inputs=describe_inputs(inputs),
        breakdown=breakdown,
    )


def run_failure(error: Exception, variant: Variant, wrapped: WrappedModel, inputs: tuple[Any, ...]) -> str:
    """The failure message for an out-of-memory error or a variant that could not run; re-raise
    anything else (the user's own error)."""
    __tracebackhide__ = True
    if is_out_of_memory(error):
        try:
            breakdown: MemoryBreakdown | None = memory.wrapped_memory(wrapped, inputs)
        except Exception:  # the analysis is a courtesy here; the out-of-memory error is the news
            breakdown = None
        name = ("jit_" if wrapped.jitted else "") + wrapped.name
        return out_of_memory_failure(error, variant, name, inputs, breakdown)
    if isinstance(error, UnsplittableBatch):
        return str(error)  # an input that cannot be sharded
    if variant.dtype != "float32" and isinstance(
        error, ValueError | TypeError | NotImplementedError | RuntimeError
    ):
        # The same model runs in float32 (its own case says so); this precision does not, here: the
        # backend lacks an operation in this dtype, or the model's own code does not hold in it.
        what = f"{type(error).__name__}: {error}"
        if isinstance(error, NotImplementedError) or _LACKING.search(str(error)):
            # Said by the backend: its compile errors reach us with jax's own frames filtered out.
            return (
                f"the {variant.dtype} variant of {wrapped.name} cannot run on {jax.default_backend()}: {what}"
            )
        raised_in = innermost_frame(error)
        backend = isinstance(error, _RUNTIME_ERRORS)  # raised by XLA at the plugin's call of the program
        in_plugin = raised_in is not None and str(Path(raised_in.filename).resolve()).startswith(
            _PLUGIN_DIRECTORY
        )
        if in_plugin and not backend:
            raise error  # the plugin's own defect: its traceback, never dressed as the model's failure
        raised_in = None if in_plugin else raised_in
        where = f"\n  at {raised_in.filename}:{raised_in.lineno}, in {raised_in.name}" if raised_in else ""
        return f"the {variant.dtype} variant of {wrapped.name} failed: {what}{where}"
    raise error


def measured_failure(
    error: Exception, variant: Variant, label: str, args: tuple[Any, ...], fn: Callable[..., Any] | None
) -> str:
    """Around a measured callable: the out-of-memory message, with the compiled breakdown where ``fn``
    can be lowered; re-raise anything else."""
    __tracebackhide__ = True
    if not is_out_of_memory(error):
        raise error
    try:
        lower = getattr(fn, "lower", None)
        breakdown = memory.compiled_memory(lower(*args).compile()) if lower is not None else None
    except Exception:  # the analysis is a courtesy here; the out-of-memory error is the news
        breakdown = None
    return out_of_memory_failure(error, variant, label, args, breakdown)


#: The plugin's own outcomes: they reach the test as they are, never "explained" as a failed run.
OWN_OUTCOMES = (RecompileError, PerformanceRegression, CaseFailed, CaseUnavailable, BaselineError)


@contextlib.contextmanager
def explained(explain: Callable[[Exception], str]) -> Iterator[None]:
    """Around running a model: an error that ``explain`` turns into a message raises
    :class:`~pytest_jaxperf.errors.CaseFailed` with it, the failed run's buffers released first.
    ``explain`` re-raises what it cannot explain; the plugin's own outcomes pass through untouched."""
    __tracebackhide__ = True
    message = ""
    try:
        yield
    except ModelStructureError as error:  # the model's own doing, said in full: no traceback adds to it
        raise CaseFailed(str(error)) from None
    except OWN_OUTCOMES:
        raise
    except Exception as error:
        message = explain(error)
    if message:
        gc.collect()  # the failed run's buffers go now, not at the end of the session
        # Raised as the explained error is unwound: that error is its context, which as_outcome shows once
        # above the message, as a failure raised where the model ran would.
        raise CaseFailed(message)
