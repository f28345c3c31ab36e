"""The ``jaxperf`` fixture object: ``wrap`` and ``check`` orchestrate the optimizations and the checks."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import warnings
from typing import TYPE_CHECKING, Any

import pytest

from .records import CheckRecord, ComparisonRecord, FigureRecord, Record
from .settings import PluginConfig
from .specs import DEFAULT_VARIANT, TestSpec, Variant
from .verdicts import INCONCLUSIVE, NEW, REGRESSED

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from .baseline import BaselineStore
    from .core.compiles import CompileWatch, RecompileError
    from .core.memory import MemoryBreakdown
    from .core.timing import Comparison
    from .core.wrap import WrappedModel
    from .optimize.batching import PipelineTiming, Sweep
    from .verdicts import Verdict


class PerformanceRegression(AssertionError):
    """A measurement regressed against its committed baseline."""


class JaxperfInconclusive(UserWarning):
    """A measurement whose change against its baseline could be neither confirmed nor ruled out."""


def _items(inputs: tuple[Any, ...]) -> int:
    from .core.timing import items_along_batch

    return items_along_batch(inputs)


def _describe_inputs(inputs: tuple[Any, ...]) -> str:
    """``[0]: f32[64,32] on cpu:0; [1]: ...``: the inputs' abstract signature."""
    from .core.signature import describe_call

    signature = describe_call(lambda *inputs: None, inputs, {})
    return "; ".join(f"{path.removeprefix('inputs')}: {leaf.describe()}" for path, leaf in signature.items())


@dataclasses.dataclass(frozen=True)
class _BuiltVariant:
    """What a precision variant was built from, before any mesh: enough to build it again elsewhere."""

    model: Any
    params: Any = None
    cast_inputs: Any = None
    """The dtype the inputs are cast to inside the model (mixed precision), or None."""
    name: str | None = None
    left_in_float: tuple[str, ...] = ()
    """Matmuls the built-in int8 quantizer could not reach (inside scan/while/cond), with the reason."""


class Jaxperf:
    """The test's handle on jaxperf, bound to its markers and its active variant.

    ``jaxperf.variant`` is the active :class:`~pytest_jaxperf.Variant`; ``jaxperf.wrap(model)`` gives the
    model with the active optimizations applied; ``jaxperf.check(model, *inputs)`` runs every check the
    test's markers ask for; ``with jaxperf.no_recompile(): ...`` fails on any compile in the block.
    """

    def __init__(
        self,
        nodeid: str,
        spec: TestSpec,
        variant: Variant = DEFAULT_VARIANT,
        config: PluginConfig | None = None,
        baselines: Callable[[], BaselineStore] | None = None,
    ) -> None:
        self.nodeid = nodeid
        self.spec = spec
        self.variant = variant
        self.config = config or PluginConfig()
        self.records: list[Record] = []
        self._baselines = baselines
        self._keys: set[str] = set()
        self._wrapped: list[tuple[tuple[Any, Any, Any], WrappedModel, _BuiltVariant]] = []
        self._explaining: contextlib.ExitStack | None = None

    # --- public API -------------------------------------------------------------------------------

    def wrap(
        self, model: Any, *example_inputs: Any, params: Any = None, convert: Callable[..., Any] | None = None
    ) -> WrappedModel:
        """The model with the active optimizations applied, as a callable of the inputs.

        ``model`` is a ``flax.nnx.Module`` or a function; with ``params`` the function is called as
        ``fn(params, *inputs)``. Under ``@jaxperf.jit_warm`` the callable is JIT-compiled and watched:
        a compile beyond ``max_compiles`` raises, naming what changed since the earlier compiles.
        Under ``@jaxperf.dtype`` it computes in the case's dtype; the int8 variants need
        ``example_inputs`` (their shapes show how each weight is used). ``convert`` replaces the
        built-in precision variant with your own (see :meth:`check`).
        """
        __tracebackhide__ = True
        # The same model (and params) wraps to the same callable: check() then wrap() share one
        # compiled function and one compile history, as a user reusing the model would expect.
        for (known_model, known_params, known_convert), known, _ in self._wrapped:
            if known_model is model and known_params is params and known_convert is convert:
                return known
        from .core.wrap import wrap_model

        variant = self._apply_precision(model, params, example_inputs, convert)
        jit_spec = self.spec.jit_warm
        mesh = self._device_mesh()
        if jit_spec is not None or mesh is not None:
            self._explain_cache_misses()
        wrapped = wrap_model(
            variant.model,
            params=variant.params,
            # Sharding over devices is a compiled program: devices() implies JIT.
            jit=jit_spec is not None or mesh is not None,
            max_compiles=jit_spec.max_compiles if jit_spec else None,
            # The fixture turns JAX's explanations on for the whole test: no per-call toggling.
            explain=False,
            mesh=mesh,
            cast_inputs=variant.cast_inputs,
            name=variant.name,
        )
        self._wrapped.append(((model, params, convert), wrapped, variant))
        return wrapped

    def check(
        self,
        model: Any,
        *example_inputs: Any,
        params: Any = None,
        convert: Callable[..., Any] | None = None,
    ) -> CheckRecord:
        """Run every check the test's markers ask for on ``model`` called with ``example_inputs``.

        The shapes and dtypes of the example inputs are the contract: with ``@jaxperf.jit_warm`` the
        model is compiled and called ``warmup`` times on them, and any further compile fails the test.
        Under ``@jaxperf.dtype`` each case also audits what the variant's matmuls compute in, and
        (but for float32) compares it with the model in float32 on hypothesis-generated inputs.

        ``convert`` supplies your own variant for the low-precision cases (a model quantized with qwix,
        cast with a jmp policy): ``convert(model)`` returns the converted NNX module, or for a function
        ``convert(fn, params)`` returns ``(fn, params)``; it is audited and checked like a built-in one.
        Returns the record of what was measured.
        """
        __tracebackhide__ = True
        if not example_inputs:
            raise TypeError(
                "jaxperf.check(model, *example_inputs) needs at least one example input: "
                "its shapes and dtypes are what the model is compiled and checked for"
            )
        from .core.compiles import event_log
        from .core.wrap import warm_up

        wrapped = self.wrap(model, *example_inputs, params=params, convert=convert)
        calls = self.spec.jit_warm.warmup if self.spec.jit_warm else 1

        # Before anything runs: a program over its budget fails here, never having touched the device.
        log = event_log()
        before = log.count
        memory = self._check_memory_budget(wrapped, example_inputs) if self.spec.memory else None
        ahead_of_time = log.backend_compiles_since(before)
        explain = functools.partial(self._explain_run_failure, wrapped, inputs=example_inputs)
        with self._failures_explained(explain):
            timings = warm_up(wrapped, example_inputs, calls)
            if wrapped.mesh is not None:
                self._check_sharded(wrapped, example_inputs)
            precision = (
                self._check_precision(model, params, wrapped, example_inputs) if self.spec.dtype else None
            )
        if memory is not None:
            memory = {**memory, **self._device_peak()}
        compiles = len(wrapped.watched.compiles) if wrapped.watched else 0
        if ahead_of_time and wrapped.watched and not any(c.call == 1 for c in wrapped.watched.compiles):
            # The memory check compiled the program ahead of time and the first call reused it from
            # JAX's executable cache: that compile is the model's, so it is counted and timed here.
            compiles += 1
            timings = dataclasses.replace(
                timings, compile_seconds=timings.compile_seconds + sum(e.seconds for e in ahead_of_time)
            )
        record = CheckRecord(
            nodeid=self.nodeid,
            variant=self.variant.id,
            model=wrapped.name,
            inputs=_describe_inputs(example_inputs),
            jit=wrapped.jitted,
            compiles=compiles,
            compile_seconds=timings.compile_seconds,
            first_call_seconds=timings.first_call_seconds,
            steady_call_seconds=timings.steady_call_seconds,
            key=self._unique_key(wrapped.name),
            precision=precision,
            memory=memory,
        )
        if self.config.measure:
            with self._failures_explained(explain):
                record = self._measure_and_gate(
                    record,
                    wrapped.run,
                    wrapped.place(*example_inputs),
                    lambda: wrapped.lower(*example_inputs),
                    items=_items(example_inputs),
                )
        self.records.append(record)
        self._fail_on_regression(record)
        return record

    def measure(
        self,
        fn: Callable[..., Any],
        *args: Any,
        name: str | None = None,
        items: int | None = None,
    ) -> CheckRecord | None:
        """Measure ``fn(*args)`` under ``--jaxperf`` and gate it against its baseline.

        Any callable: a jitted one also gets the deterministic metrics (FLOPs, bytes, memory, HLO).
        ``items`` is the batch size for throughput (default: the first array argument's leading
        dimension). Without ``--jaxperf`` nothing is measured and None is returned.
        """
        __tracebackhide__ = True
        if not self.config.measure:
            return None
        from .core.compiles import event_log, function_name
        from .core.timing import timed_call

        label = name or function_name(fn)
        # The first call apart: it may compile, and it is no sample. What it compiled is counted, not
        # attributed: fn may be any callable, calling any number of jitted functions.
        log = event_log()
        before = log.count
        with self._out_of_memory_fails(label, args, fn):
            _, first_seconds = timed_call(fn, *args)
        compile_events = log.backend_compiles_since(before)
        record = CheckRecord(
            nodeid=self.nodeid,
            variant=self.variant.id,
            model=label,
            inputs=_describe_inputs(args),
            jit=hasattr(fn, "lower"),
            compiles=None,
            compile_seconds=sum(e.seconds for e in compile_events),
            first_call_seconds=first_seconds,
            steady_call_seconds=(),
            key=self._unique_key(label),
        )
        lower = (lambda: fn.lower(*args)) if hasattr(fn, "lower") else None
        with self._out_of_memory_fails(label, args, fn):
            record = self._measure_and_gate(record, fn, args, lower, items=items)
        self.records.append(record)
        self._fail_on_regression(record)
        return record

    def compare(
        self,
        a: Callable[..., Any],
        b: Callable[..., Any],
        *args: Any,
        names: tuple[str, str] | None = None,
    ) -> Comparison:
        """Time ``a(*args)`` and ``b(*args)`` interleaved (ABBA…) and report B's time relative to A's.

        Interleaving makes both share the machine's drift, so the ratio is far steadier than two
        separate measurements (fp32 against bf16, say). Runs whether or not ``--jaxperf`` is given.
        """
        from .core.compiles import function_name
        from .core.timing import TimingConfig, compare_callables

        labels = names or (function_name(a), function_name(b))
        comparison = compare_callables(
            lambda: a(*args),
            lambda: b(*args),
            names=labels,
            config=TimingConfig(target=self.config.ci_target, budget_seconds=self._budget()),
        )
        self.records.append(ComparisonRecord(self.nodeid, self.variant.id, dataclasses.asdict(comparison)))
        return comparison

    def no_recompile(self, *functions: Callable[..., Any], max_compiles: int = 0) -> CompileWatch:
        """A block that fails when ``functions`` (or, with none given, anything) compile in it.

        ``with jaxperf.no_recompile(fn): fn(x)`` raises on leaving the block if ``fn`` compiled more
        than ``max_compiles`` times inside it; pass ``jaxperf.wrap``-ed models to get the cause of each
        compile, or any jitted function to get JAX's explanation.
        """
        from .core.compiles import CompileWatch
        from .core.wrap import WrappedModel

        self._explain_cache_misses()
        watched: list[Callable[..., Any]] = []
        for function in functions:
            if isinstance(function, WrappedModel):
                if function.watched is None:
                    raise TypeError(
                        f"no_recompile: {function.name} was wrapped without @jaxperf.jit_warm, so it "
                        "is not compiled and there is nothing to watch"
                    )
                watched.append(function.watched)
            elif callable(function):
                watched.append(function)
            else:
                raise TypeError(f"no_recompile takes functions to watch, got {function!r}")
        return CompileWatch(*watched, max_compiles=max_compiles)

    def record(self, name: str, value: float, unit: str) -> None:
        """Report a figure this test measured; shown under ``--jaxperf`` and written to the JSON."""
        self.records.append(FigureRecord(self.nodeid, self.variant.id, name, float(value), unit))

    def _record_sweep_point(self, model: str, batch: int, name: str, value: float, unit: str) -> None:
        # Model and batch as fields, so that `jaxperf report` plots throughput against batch size.
        record = FigureRecord(
            self.nodeid, self.variant.id, name, float(value), unit, model=model, batch=batch
        )
        self.records.append(record)

    def batch_sweep(
        self,
        model: Any,
        *example_inputs: Any,
        sizes: Sequence[int] = (1, 8, 64, 512),
        params: Any = None,
    ) -> Sweep:
        """Throughput and latency of ``model`` per batch size, one compile per size, and the saturation.

        Each example input's first row (axis 0 is the batch) is repeated to each size; each point is
        reported as a figure.
        """
        from .core.timing import TimingConfig
        from .core.wrap import wrap_model
        from .optimize.batching import batch_sweep

        wrapped = wrap_model(model, params=params, jit=True)
        assert wrapped.watched is not None
        with self._out_of_memory_fails(f"{wrapped.name} (batch sweep)", example_inputs, None):
            sweep = batch_sweep(
                wrapped.watched,
                *example_inputs,
                sizes=sizes,
                config=TimingConfig(target=self.config.ci_target, budget_seconds=min(self._budget(), 1.0)),
            )
        for point in sweep.points:
            name, batch = wrapped.name, point.batch
            self._record_sweep_point(
                name, batch, f"{name} batch {batch}: throughput", point.throughput, "items/s"
            )
            self._record_sweep_point(
                name, batch, f"{name} batch {batch}: latency", point.latency_seconds * 1e3, "ms"
            )
        self.record(f"{wrapped.name}: throughput saturates at batch", sweep.saturation, "rows")
        return sweep

    def pipeline(self, stage_one: Any, stage_two: Any, x: Any) -> tuple[Any, PipelineTiming]:
        """Stage one on device 0, stage two on device 1: the output, checked against one device, and
        the time of each stage and of the transfer between them (reported as figures).

        Skips with the reason when fewer than two devices exist.
        """
        __tracebackhide__ = True
        import jax
        import numpy as np

        from .optimize.batching import on_device, pipeline_split

        if len(jax.devices()) < 2:
            pytest.skip("jaxperf pipeline: needs 2 devices, 1 available (--jaxperf-cpu-devices gives more)")
        with self._out_of_memory_fails("pipeline", (x,), None):
            output, timing = pipeline_split(stage_one, stage_two, x)
        device = jax.devices()[0]
        reference = on_device(stage_two, device)(on_device(stage_one, device)(x))
        np.testing.assert_allclose(
            np.asarray(output), np.asarray(reference), rtol=1e-5, atol=1e-6,
            err_msg="the pipeline's output differs from both stages run on one device",
        )  # fmt: skip
        self.record("pipeline stage one", timing.stage_one_seconds * 1e3, "ms")
        self.record(
            f"pipeline transfer {timing.devices[0]} → {timing.devices[1]}",
            timing.transfer_seconds * 1e3,
            "ms",
        )
        self.record("pipeline transfer size", timing.transferred_bytes, "bytes")
        self.record("pipeline stage two", timing.stage_two_seconds * 1e3, "ms")
        return output, timing

    # --- memory and failed runs ------------------------------------------------------------------------

    def _compiled_breakdown(self, wrapped: WrappedModel, inputs: tuple[Any, ...]) -> MemoryBreakdown:
        """What the model's compiled program needs (compiles ahead of time; runs nothing)."""
        import jax

        from .core.memory import compiled_memory

        lowered = wrapped.lower(*inputs)
        if lowered is None:  # not jitted here: the same function, compiled for the analysis only
            assert wrapped.forward is not None
            lowered = jax.jit(wrapped.forward).lower(wrapped.params, *inputs)
        return compiled_memory(lowered.compile())

    def _check_memory_budget(self, wrapped: WrappedModel, inputs: tuple[Any, ...]) -> dict[str, Any]:
        """Fail before running when the compiled program needs more than ``@jaxperf.memory``'s budget."""
        __tracebackhide__ = True
        from .core.memory import MemoryAnalysisUnavailable, format_bytes

        spec = self.spec.memory
        assert spec is not None
        try:
            breakdown = self._compiled_breakdown(wrapped, inputs)
        except MemoryAnalysisUnavailable as error:
            import jax

            message = (
                f"jaxperf {self.variant.case_id}: the memory budget cannot be checked: "
                f"{jax.default_backend()} does not report a compiled program's memory ({error})"
            )
        else:
            message = ""
        if message:
            pytest.skip(message)
        if breakdown.total > spec.max_bytes:
            pytest.fail(
                f"jaxperf {self.variant.case_id}: {wrapped.name} needs {format_bytes(breakdown.total)} of "
                f"device memory, over its budget of {format_bytes(spec.max_bytes)} "
                f"({breakdown.total:,} > {spec.max_bytes:,} bytes): {breakdown.describe()}; "
                f"inputs {_describe_inputs(inputs)}. Nothing was run.",
                pytrace=False,
            )
        return {"budget_bytes": spec.max_bytes, "compiled": breakdown.to_dict()}

    def _out_of_memory_message(self, wrapped: WrappedModel, error: Exception, inputs: tuple[Any, ...]) -> str:
        try:
            breakdown: MemoryBreakdown | None = self._compiled_breakdown(wrapped, inputs)
        except Exception:  # the analysis is a courtesy here; the out-of-memory error is the news
            breakdown = None
        name = ("jit_" if wrapped.jitted else "") + wrapped.name
        return self._format_out_of_memory(error, name, inputs, breakdown)

    def _format_out_of_memory(
        self, error: BaseException, function: str, inputs: tuple[Any, ...], breakdown: MemoryBreakdown | None
    ) -> str:
        import jax

        from .core.memory import out_of_memory_message

        device = jax.devices()[0]
        return f"jaxperf {self.variant.case_id}: " + out_of_memory_message(
            error,
            device=f"{device.platform}:{device.id}",
            function=function,
            variant=self.variant.id,
            inputs=_describe_inputs(inputs),
            breakdown=breakdown,
        )

    @contextlib.contextmanager
    def _failures_explained(self, explain: Callable[[Exception], str]) -> Iterator[None]:
        """Around running a model: an error that ``explain`` turns into a message fails the test, the
        failed run's buffers released first; ``explain`` re-raises what it cannot explain, and the
        plugin's own outcomes (fail, skip, recompile, regression) pass through untouched."""
        __tracebackhide__ = True
        from .core.compiles import RecompileError

        message = ""
        try:
            yield
        except (RecompileError, PerformanceRegression, pytest.fail.Exception, pytest.skip.Exception):
            raise
        except Exception as error:
            message = explain(error)
        if message:
            gc.collect()  # the failed run's buffers go now, not at the end of the session
            pytest.fail(message, pytrace=False)

    def _out_of_memory_fails(
        self, label: str, args: tuple[Any, ...], fn: Any
    ) -> contextlib.AbstractContextManager[None]:
        """Around a measured callable: running out of memory fails the test with the breakdown."""
        return self._failures_explained(functools.partial(self._explain_out_of_memory, label, args, fn))

    def _explain_out_of_memory(self, label: str, args: tuple[Any, ...], fn: Any, error: Exception) -> str:
        __tracebackhide__ = True
        from .core.memory import compiled_memory, is_out_of_memory

        if not is_out_of_memory(error):
            raise error
        try:
            breakdown = compiled_memory(fn.lower(*args).compile()) if hasattr(fn, "lower") else None
        except Exception:  # the analysis is a courtesy here; the out-of-memory error is the news
            breakdown = None
        return self._format_out_of_memory(error, label, args, breakdown)

    def _device_peak(self) -> dict[str, Any]:
        """The device's peak bytes in use so far (GPU/TPU; a process-lifetime high-water mark)."""
        import jax

        from .core.memory import device_memory_stats

        stats = device_memory_stats(jax.devices()[0])
        return {"device_peak_bytes": stats["peak_bytes_in_use"]} if "peak_bytes_in_use" in stats else {}

    def _explain_run_failure(
        self, wrapped: WrappedModel, error: Exception, *, inputs: tuple[Any, ...]
    ) -> str:
        """The failure message for an out-of-memory error or a variant that could not run; re-raise
        anything else (the user's own error)."""
        __tracebackhide__ = True
        from .core.memory import is_out_of_memory

        if is_out_of_memory(error):
            return self._out_of_memory_message(wrapped, error, inputs)
        if self.variant.dtype != "float32" and isinstance(
            error, ValueError | TypeError | NotImplementedError | RuntimeError
        ):
            import jax

            # The same model runs in float32 (its own case says so); this precision does not, here.
            return (
                f"jaxperf {self.variant.case_id}: the {self.variant.dtype} variant of {wrapped.name} cannot "
                f"run on {jax.default_backend()}: {type(error).__name__}: {error}"
            )
        if wrapped.mesh is not None and isinstance(error, ValueError):
            return f"jaxperf {self.variant.case_id}: {error}"  # an input that cannot be sharded
        raise error

    # --- precision variants ----------------------------------------------------------------------------

    def _apply_precision(
        self, model: Any, params: Any, example_inputs: tuple[Any, ...], convert: Callable[..., Any] | None
    ) -> _BuiltVariant:
        """The case's precision variant of the model."""
        __tracebackhide__ = True
        dtype = self.variant.dtype
        if dtype == "float32":
            return _BuiltVariant(model, params)
        from .core.compiles import function_name
        from .core.wrap import describe_model_error, is_nnx_module

        error = describe_model_error(model, params)
        if error:
            raise TypeError(error)
        # The variant keeps the model's name (a converted function has its own).
        name = type(model).__name__ if is_nnx_module(model) else function_name(model)
        if convert is not None and params is None:
            from flax import nnx

            # A copy: a conversion that edits the module in place (swapping its layers, say) would
            # otherwise change the float32 reference too, and the fidelity check would compare the
            # variant with itself.
            return _BuiltVariant(convert(nnx.clone(model) if is_nnx_module(model) else model), name=name)
        if convert is not None:
            converted = convert(model, params)
            if not (isinstance(converted, tuple) and len(converted) == 2):
                raise TypeError(
                    f"convert(fn, params) must return (fn, params) for a function model, got {converted!r}"
                )
            return _BuiltVariant(converted[0], converted[1], name=name)
        if dtype in ("bfloat16", "float16"):
            from .optimize.precision import COMPUTE_DTYPES, mixed_precision

            low_model, low_params = mixed_precision(model, COMPUTE_DTYPES[dtype], params=params)
            return _BuiltVariant(low_model, low_params, COMPUTE_DTYPES[dtype], name)
        if not example_inputs:
            raise TypeError(
                f"jaxperf {self.variant.case_id}: int8 quantization needs example inputs to see how each "
                "weight is used: jaxperf.wrap(model, *example_inputs)"
            )
        from .optimize.quantize import QuantizationError, quantize_int8

        try:
            quantized = quantize_int8(model, *example_inputs, params=params, dynamic=dtype == "int8-dynamic")
        except QuantizationError as failure:
            message = f"jaxperf {self.variant.case_id}: {failure}"
        else:
            return _BuiltVariant(
                quantized.apply,
                quantized.params,
                name=quantized.name,
                left_in_float=tuple(f"{f.name} ({f.reason})" for f in quantized.left_in_float),
            )
        pytest.skip(message)

    def _check_precision(
        self, model: Any, params: Any, wrapped: WrappedModel, example_inputs: tuple[Any, ...]
    ) -> dict[str, Any]:
        """Audit the variant's matmuls and (but for float32) check it against float32; fail on either."""
        __tracebackhide__ = True

        from .checks.audit import audit
        from .checks.fidelity import check_fidelity, floor_for
        from .core.memory import tree_bytes
        from .core.wrap import wrap_model

        dtype = self.variant.dtype
        # float32's parameter bytes are the reference's: the model as given, wrapped as it is.
        reference = (
            wrapped if dtype == "float32" else wrap_model(model, params=params, jit=True, name=wrapped.name)
        )
        compiled = wrapped.lower(*example_inputs)
        result = audit(
            wrapped.program(*example_inputs),
            dtype,
            compiled.compile().as_text() if compiled is not None else "",
        )
        summary: dict[str, Any] = {
            "dtype": dtype,
            "audit": result.to_dict(),
            # matmuls the built-in int8 quantizer could not reach (inside scan/while/cond)
            "left_in_float": list(self._built_variant(wrapped).left_in_float),
            "param_bytes": tree_bytes(wrapped.params),
            "float32_param_bytes": tree_bytes(reference.params),
            "fidelity": None,
        }
        if not result.passed:
            pytest.fail(f"jaxperf {self.variant.case_id}: {result.failure()}", pytrace=False)
        if dtype == "float32":
            return summary
        spec = self.spec.dtype
        assert spec is not None
        fidelity = check_fidelity(
            reference,
            wrapped,
            example_inputs,
            dtype=dtype,
            floor_db=floor_for(dtype, spec.min_sqnr_db),
            max_examples=spec.max_examples,
            database_key=f"{self.nodeid}::{wrapped.name}",
            input_scale=spec.input_scale,
            input_kinds=spec.input_kinds,
        )
        summary["fidelity"] = fidelity.to_dict()
        if fidelity.failure:
            pytest.fail(f"jaxperf {self.variant.case_id}: {fidelity.failure}", pytrace=False)
        return summary

    # --- measurement and gate ------------------------------------------------------------------------

    def _unique_key(self, name: str) -> str:
        # The same model checked twice in one test gets #2, #3: each keeps its own baseline.
        key, index = name, 1
        while key in self._keys:
            index += 1
            key = f"{name}#{index}"
        self._keys.add(key)
        return key

    def _budget(self) -> float:
        gate = self.spec.gate
        return gate.budget_seconds if gate and gate.budget_seconds else self.config.budget_seconds

    def _measure_and_gate(
        self,
        record: CheckRecord,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        lower: Callable[[], Any] | None,
        items: int | None = None,
    ) -> CheckRecord:
        __tracebackhide__ = True
        from .core.metrics import deterministic_metrics, roofline
        from .core.timing import TimingConfig, items_along_batch, measure_callable

        gate = self.spec.gate
        mode = (gate.mode if gate and gate.mode else None) or self.config.mode
        timing_config = TimingConfig(mode=mode, target=self.config.ci_target, budget_seconds=self._budget())
        lowered = lower() if lower is not None else None
        metrics = deterministic_metrics(lowered).to_dict() if lowered is not None else None
        items = items or items_along_batch(args)
        timing = measure_callable(fn, args, items_per_call=items, config=timing_config)
        current = dataclasses.replace(record, timing=timing.to_dict(), metrics=metrics)
        verdict = self._verdict(current)
        if verdict is not None and verdict.status == INCONCLUSIVE:
            # One bounded re-measure with twice the budget; if still unclear it stays a warning.
            longer = dataclasses.replace(timing_config, budget_seconds=2 * timing_config.budget_seconds)
            timing = measure_callable(fn, args, items_per_call=items, config=longer)
            current = dataclasses.replace(current, timing=timing.to_dict())
            verdict = self._verdict(current)
            if verdict is not None and verdict.status == INCONCLUSIVE:
                warnings.warn(
                    JaxperfInconclusive(f"{self.nodeid} {record.key}: inconclusive, {verdict.reason}"),
                    stacklevel=3,
                )
        return dataclasses.replace(
            current,
            roofline=roofline(metrics, timing.median, self.config.measure_peaks),
            verdict=verdict.to_dict() if verdict is not None else None,
        )

    def _verdict(self, current: CheckRecord) -> Verdict | None:
        from .verdicts import NOT_COMPARABLE, Verdict, verdict

        if self._baselines is None or current.timing is None:
            return None
        from .baseline import BaselineError

        try:
            lookup = self._baselines().lookup(current.module, current.baseline_key)
        except BaselineError as error:
            message = f"jaxperf: {error}"
        else:
            message = ""
        if message:
            # Outside the except block: the report shows the message, not a chained traceback.
            pytest.fail(message, pytrace=False)
        if lookup.status == NEW:
            return Verdict(NEW, "no baseline yet: record one with --jaxperf-update-baselines")
        if lookup.record is None:
            return Verdict(NOT_COMPARABLE, lookup.reason)
        gate = self.spec.gate
        threshold = gate.threshold if gate and gate.threshold else self.config.threshold
        return verdict(
            current.gate_fields(),
            lookup.record,
            current.timing["samples"],
            lookup.record.get("samples", []),
            threshold=threshold,
        )

    def _fail_on_regression(self, record: CheckRecord) -> None:
        __tracebackhide__ = True
        if record.verdict and record.verdict["status"] == REGRESSED and not self.config.update_baselines:
            raise PerformanceRegression(f"{record.model} ({self.variant.id}): {record.verdict['reason']}")

    # --- plugin side ------------------------------------------------------------------------------

    def unreported_violation(self) -> RecompileError | None:
        """A recompile failure raised inside the test but swallowed before it reached pytest."""
        for _, wrapped, _ in self._wrapped:
            if wrapped.watched is not None and wrapped.watched.violation is not None:
                return wrapped.watched.violation
        return None

    def close(self) -> None:
        """Undo what the fixture changed in jax's configuration."""
        if self._explaining is not None:
            self._explaining.close()
            self._explaining = None

    def _explain_cache_misses(self) -> None:
        # On for the rest of the test, so that watched calls need not toggle it each time.
        if self._explaining is None:
            from .core.compiles import explaining_cache_misses

            self._explaining = contextlib.ExitStack()
            self._explaining.enter_context(explaining_cache_misses())

    def _device_mesh(self) -> Any:
        """The mesh for the variant's device count (None for one device); skips when it cannot be had."""
        __tracebackhide__ = True
        devices = self.spec.devices
        if devices is None:
            return None
        import jax

        from .core.placement import DeviceShortage, batch_mesh

        backend = jax.default_backend()
        if devices.platform and devices.platform != backend:
            pytest.skip(
                f"jaxperf {self.variant.case_id}: needs platform {devices.platform}, running on {backend}"
            )
        if self.variant.devices == 1:
            return None
        try:
            return batch_mesh(self.variant.devices, devices.platform)
        except DeviceShortage as error:
            message = f"jaxperf {self.variant.case_id}: {error}"
        pytest.skip(message)

    def _built_variant(self, wrapped: WrappedModel) -> _BuiltVariant:
        return next(variant for _, known, variant in self._wrapped if known is wrapped)

    def _check_sharded(self, wrapped: WrappedModel, inputs: tuple[Any, ...]) -> None:
        """The compiled program really spans the mesh, and it computes what one device computes."""
        __tracebackhide__ = True
        from .checks.sharding import sharding_problems
        from .core.wrap import wrap_model

        # The same variant (its precision, its int8 weights) on one device.
        variant = self._built_variant(wrapped)
        single = wrap_model(
            variant.model, params=variant.params, jit=True, cast_inputs=variant.cast_inputs, name=variant.name
        )
        problems = sharding_problems(wrapped, single, inputs)
        if problems:
            pytest.fail(f"jaxperf {self.variant.case_id}: {'; '.join(problems)}", pytrace=False)
