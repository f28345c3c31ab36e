"""What ``jaxperf.check`` and ``jaxperf.measure`` find, as records: one case's checks in the order a
model meets them, and a measured callable's first call.

Pytest-free: a failed check raises :class:`~pytest_jaxperf.errors.CaseFailed`, a case that cannot run
here :class:`~pytest_jaxperf.errors.CaseUnavailable`, for the fixture to turn into the test's outcome.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from .checks.budget import check_memory_budget
from .checks.precision import check_precision
from .checks.sharding import check_sharded
from .core.compiles import event_log
from .core.memory import device_peak
from .core.signature import describe_inputs
from .core.timing import timed_call
from .core.wrap import counted_compiles, warm_up
from .failures import explained, measured_failure, run_failure
from .records import CheckRecord

if TYPE_CHECKING:
    from collections.abc import Callable

    from .core.wrap import WrappedModel
    from .optimize.variant import BuiltVariant
    from .specs import Case


def check_case(
    wrapped: WrappedModel,
    built: BuiltVariant,
    example_inputs: tuple[Any, ...],
    case: Case,
) -> CheckRecord:
    """Every check the case's markers ask for on ``wrapped`` (the variant ``built``): the memory budget
    before anything runs, the warm-up, the sharding agreement, the precision; the record (its ``key``
    left for the fixture to make unique within the test)."""
    __tracebackhide__ = True
    spec, variant, nodeid = case.spec, case.variant, case.nodeid
    # Before anything runs: a program over its budget fails here, never having touched the device.
    log = event_log()
    before = log.count
    memory = check_memory_budget(wrapped, example_inputs, spec.memory) if spec.memory else None
    ahead_of_time = log.backend_compiles_since(before)
    with explained(functools.partial(run_failure, variant=variant, wrapped=wrapped, inputs=example_inputs)):
        timings = warm_up(wrapped, example_inputs, spec.jit_warm.warmup if spec.jit_warm else 1)
        if wrapped.mesh is not None:
            check_sharded(wrapped, built.on_one_device().wrap(jit=True), example_inputs)
        precision = None
        if spec.dtype is not None:
            precision = check_precision(
                built.float32_model,
                built.float32_params,
                wrapped,
                example_inputs,
                dtype=variant.dtype,
                spec=spec.dtype,
                left_in_float=built.left_in_float,
                database_key=f"{nodeid}::{wrapped.name}",
            )
    compiles, timings = counted_compiles(wrapped, timings, ahead_of_time)
    peak = device_peak() if memory is not None else None
    if memory is not None and peak is not None:
        memory["device_peak_bytes"] = peak
    return CheckRecord(
        nodeid=nodeid,
        variant=variant.id,
        model=wrapped.name,
        inputs=describe_inputs(example_inputs),
        jit=wrapped.jitted,
        compiles=compiles,
        compile_seconds=timings.compile_seconds,
        first_call_seconds=timings.first_call_seconds,
        steady_call_seconds=timings.steady_call_seconds,
        precision=precision,
        memory=memory,
    )


def first_call(fn: Callable[..., Any], args: tuple[Any, ...], label: str, case: Case) -> CheckRecord:
    """``fn(*args)`` called once, timed and its compiles counted: the record a measurement starts from
    (its ``key`` left for the fixture to make unique within the test)."""
    __tracebackhide__ = True
    variant, nodeid = case.variant, case.nodeid
    # The first call apart: it may compile, and it is no sample. What it compiled is counted, not
    # attributed: fn may be any callable, calling any number of jitted functions.
    log = event_log()
    before = log.count
    with explained(functools.partial(measured_failure, variant=variant, label=label, args=args, fn=fn)):
        _, first_seconds = timed_call(fn, *args)
    compile_events = log.backend_compiles_since(before)
    return CheckRecord(
        nodeid=nodeid,
        variant=variant.id,
        model=label,
        inputs=describe_inputs(args),
        jit=hasattr(fn, "lower"),
        compiles=None,
        compile_seconds=sum(e.seconds for e in compile_events),
        first_call_seconds=first_seconds,
        steady_call_seconds=(),
    )
