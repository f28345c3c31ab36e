"""What ``jaxperf.check`` and ``jaxperf.measure`` find, as records: one case's checks in the order a
model meets them, a measured callable's first call, and (under ``--jaxperf``) the measurement of either,
a failed run explained; a case's batch sweep and its pipeline over two devices.

Pytest-free: a failed check raises :class:`~pytest_jaxperf.errors.CaseFailed`, a case that cannot run
here :class:`~pytest_jaxperf.errors.CaseUnavailable`, for the fixture to turn into the test's outcome.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import jax

from .checks.budget import check_memory_budget
from .checks.outputs import nan_values
from .checks.precision import check_precision
from .checks.sharding import check_pipeline_output, check_sharded
from .core.compiles import event_log
from .core.memory import device_peak
from .core.replay import current_program
from .core.signature import describe_inputs
from .core.timing import items_along_batch, timed_call
from .core.wrap import counted_compiles, warm_up
from .errors import CaseFailed, CaseUnavailable
from .failures import explained, measured_failure, run_failure
from .gating import measure_and_gate
from .optimize.batching import batch_sweep, on_device, pipeline_split
from .records import CheckRecord

if TYPE_CHECKING:
    import contextlib
    from collections.abc import Callable, Sequence

    from .baseline import BaselineStore
    from .core.timing import TimingConfig
    from .core.wrap import WrappedModel
    from .optimize.batching import PipelineTiming, Sweep
    from .optimize.variant import BuiltVariant
    from .settings import PluginSettings
    from .specs import Case, Variant


def check_case(
    wrapped: WrappedModel,
    built: BuiltVariant,
    example_inputs: tuple[Any, ...],
    case: Case,
    *,
    allow_nan: bool = False,
) -> CheckRecord:
    """Every check the case's markers ask for on ``wrapped`` (the variant ``built``): the memory budget
    before anything runs, the warm-up and its output (NaN in float32 fails, unless ``allow_nan``), the
    sharding agreement, the precision; the record (its ``key`` left for the
    fixture to make unique within the test)."""
    __tracebackhide__ = True
    spec, variant, nodeid = case.spec, case.variant, case.nodeid
    # Before anything runs: a program over its budget fails here, never having touched the device.
    log = event_log()
    before = log.count
    memory = check_memory_budget(wrapped, example_inputs, spec.memory) if spec.memory else None
    ahead_of_time = log.backend_compiles_since(before)
    with explained_run(variant, wrapped, example_inputs):
        timings, output = warm_up(wrapped, example_inputs, spec.jit_warm.warmup if spec.jit_warm else 1)
        # In float32 only: a lower precision's inf or NaN is the fidelity check's to explain.
        problem = None if allow_nan or variant.dtype != "float32" else nan_values(output)
        del output  # not held on the device through the checks below
        if problem:
            raise CaseFailed(
                f"{wrapped.name} on its example inputs: {problem}. A model whose output is NaN gives no "
                "figure worth gating (jaxperf_allow_nan = true in the ini file allows it)"
            )
        if wrapped.mesh is not None:
            check_sharded(wrapped, built.on_one_device().wrap(jit=True), example_inputs, variant.dtype)
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
    with explained_out_of_memory(variant, label, args, fn):
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


def measure_checked(
    record: CheckRecord,
    wrapped: WrappedModel,
    example_inputs: tuple[Any, ...],
    case: Case,
    settings: PluginSettings,
    baselines: Callable[[], BaselineStore] | None,
) -> CheckRecord:
    """A checked model's record, timed on its placed inputs and judged against its baseline."""
    __tracebackhide__ = True
    inputs = example_inputs
    with explained_run(case.variant, wrapped, inputs):
        return measure_and_gate(
            record,
            wrapped.run,
            wrapped.place(*inputs),
            lambda: wrapped.lower(*inputs),
            items=items_along_batch(inputs),
            settings=settings,
            gate=case.spec.gate,
            baselines=baselines,
            program=lambda: current_program(wrapped, inputs),
        )


def measure_called(
    record: CheckRecord,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    items: int | None,
    case: Case,
    settings: PluginSettings,
    baselines: Callable[[], BaselineStore] | None,
) -> CheckRecord:
    """A measured callable's record (:func:`first_call`), timed and judged against its baseline."""
    __tracebackhide__ = True
    lower = (lambda: fn.lower(*args)) if hasattr(fn, "lower") else None
    with explained_out_of_memory(case.variant, record.model, args, fn):
        return measure_and_gate(
            record, fn, args, lower, items=items, settings=settings, gate=case.spec.gate, baselines=baselines
        )


def explained_out_of_memory(
    variant: Variant, label: str, args: tuple[Any, ...], fn: Callable[..., Any] | None = None
) -> contextlib.AbstractContextManager[None]:
    """Around running ``fn`` (or what is no single callable, named ``label``): out of memory fails the
    case with the compiled breakdown where ``fn`` can be lowered."""
    return explained(functools.partial(measured_failure, variant=variant, label=label, args=args, fn=fn))


def explained_run(
    variant: Variant, wrapped: WrappedModel, inputs: tuple[Any, ...]
) -> contextlib.AbstractContextManager[None]:
    """Around running a checked model: out of memory, a variant that cannot run here or an input that
    cannot be sharded fails the case, saying so; the user's own errors pass through."""
    return explained(functools.partial(run_failure, variant=variant, wrapped=wrapped, inputs=inputs))


def swept(
    built: BuiltVariant,
    example_inputs: tuple[Any, ...],
    sizes: Sequence[int],
    timing: TimingConfig,
    variant: Variant,
) -> tuple[str, Sweep]:
    """The variant ``built`` timed at each batch size (:func:`~pytest_jaxperf.optimize.batching.batch_sweep`),
    and its name; out of memory fails the case with the compiled breakdown."""
    __tracebackhide__ = True
    # Not the case's wrapped model: the sweep compiles once per size, which its compile limit forbids.
    wrapped = built.wrap(jit=True)
    assert wrapped.watched is not None
    label = f"{wrapped.name} (batch sweep)"
    with explained_out_of_memory(variant, label, example_inputs):
        return wrapped.name, batch_sweep(wrapped.watched, *example_inputs, sizes=sizes, config=timing)


def pipelined(stage_one: Any, stage_two: Any, x: Any, variant: Variant) -> tuple[Any, PipelineTiming]:
    """Stage one on device 0, stage two on device 1, timed (:func:`~pytest_jaxperf.optimize.batching.
    pipeline_split`) and checked against both run on one device; CaseUnavailable with fewer devices."""
    __tracebackhide__ = True
    devices = jax.devices()
    if len(devices) < 2:
        raise CaseUnavailable(
            f"pipeline needs 2 devices, {len(devices)} available (--jaxperf-cpu-devices gives more)"
        )
    with explained_out_of_memory(variant, "pipeline", (x,)):
        output, timing = pipeline_split(stage_one, stage_two, x, devices[:2])
    device = devices[0]
    check_pipeline_output(output, on_device(stage_two, device)(on_device(stage_one, device)(x)))
    return output, timing
