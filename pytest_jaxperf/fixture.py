"""The ``jaxperf`` fixture object: the test's thin face on the rooms below. Each method calls them
(variant, wrap, checks, gate) and turns what they raise into the test's outcome, named by the case."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from .case_models import CaseModels
from .checking import (
    check_case,
    first_call,
    measure_called,
    measure_checked,
    pipelined,
    swept,
)
from .core.call import CallPattern
from .core.compiles import function_name
from .core.timing import TimingConfig, compare_callables
from .core.wrap import WrappedModel, compile_watch
from .expectations import hold_at_least, speedup
from .gating import budget_seconds
from .outcomes import as_outcome, fail_on_regression
from .records import CheckRecord, ComparisonRecord, FigureRecord, Record
from .replaying import store_program
from .settings import PluginSettings
from .specs import DEFAULT_VARIANT, Case, TestSpec, Variant

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .baseline import BaselineStore
    from .core.compiles import CompileWatch, RecompileError
    from .core.timing import Comparison
    from .optimize.batching import Figure, PipelineTiming, Sweep


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
        settings: PluginSettings | None = None,
        baselines: Callable[[], BaselineStore] | None = None,
    ) -> None:
        self.nodeid = nodeid
        self.spec = spec
        self.variant = variant
        self.settings = settings or PluginSettings()
        self.records: list[Record] = []
        self._baselines = baselines
        self._keys: set[str] = set()
        self._models = CaseModels(spec, variant)

    # --- public API -------------------------------------------------------------------------------

    def wrap(
        self,
        model: Any,
        *example_args: Any,
        params: Any = None,
        convert: Callable[..., Any] | None = None,
        **example_kwargs: Any,
    ) -> WrappedModel:
        """The model with the active optimizations applied, called as the model is.

        ``model`` is a ``flax.nnx.Module`` or a function; with ``params`` the function is called as
        ``fn(params, *inputs)``. The example call's keyword arguments go to the model as keywords (see
        :meth:`check`); the wrapped callable takes the same call. Under ``@jaxperf.jit_warm`` the
        callable is JIT-compiled and watched:
        a compile beyond ``max_compiles`` raises, naming what changed since the earlier compiles.
        Under ``@jaxperf.dtype`` it computes in the case's dtype; the int8 variants need
        ``example_inputs`` (their shapes show how each weight is used). ``convert`` replaces the
        built-in precision variant with your own (see :meth:`check`).
        """
        __tracebackhide__ = True
        pattern, example_inputs = CallPattern.split(example_args, example_kwargs)
        if not example_inputs and example_kwargs:
            raise TypeError(
                f"jaxperf.wrap: the example call {pattern.describe()} holds no input: give its inputs too, "
                "jaxperf.wrap(model, x, ...), so that its static arguments are bound around them"
            )
        with as_outcome(self.variant.case_id):
            return self._models.wrapped(model, example_inputs, params, convert, pattern)[0]

    def check(
        self,
        model: Any,
        *example_args: Any,
        params: Any = None,
        convert: Callable[..., Any] | None = None,
        **example_kwargs: Any,
    ) -> CheckRecord:
        """Run every check the test's markers ask for on ``model`` called as ``model(*example_args,
        **example_kwargs)``.

        Arguments holding arrays are the model's inputs, positional or keyword alike: placed, sharded on
        their batch axis, generated for the fidelity check. Every other argument (``None``, a Python
        scalar or string, ``deterministic=True``) is static: part of the compiled program, passed as given.
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
        pattern, example_inputs = CallPattern.split(example_args, example_kwargs)
        if not example_inputs:
            given = f" (got only static arguments: {pattern.describe()})" if not pattern.plain else ""
            raise TypeError(
                "jaxperf.check(model, *example_inputs) needs at least one example input holding an array"
                f"{given}: its shapes and dtypes are what the model is compiled and checked for"
            )
        with as_outcome(self.variant.case_id):
            wrapped, built = self._models.wrapped(model, example_inputs, params, convert, pattern)
            allow = self.settings.allow_nan
            record = self._keyed(check_case(wrapped, built, example_inputs, self._case, allow_nan=allow))
            if self.settings.update_baselines:  # the baseline keeps the program it measured
                program = store_program(wrapped, example_inputs, self.settings.program_limit_bytes)
                record = dataclasses.replace(record, program=program)
            if self.settings.measure:
                record = measure_checked(
                    record, wrapped, example_inputs, self._case, self.settings, self._baselines
                )
        return self._kept(record)

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
        if not self.settings.measure:
            return None
        label = name or function_name(fn)
        with as_outcome(self.variant.case_id):
            record = self._keyed(first_call(fn, args, label, self._case))
            record = measure_called(record, fn, args, items, self._case, self.settings, self._baselines)
        return self._kept(record)

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
        labels = names or (function_name(a), function_name(b))
        comparison = compare_callables(
            lambda: a(*args),
            lambda: b(*args),
            names=labels,
            config=TimingConfig(target=self.settings.ci_target, budget_seconds=self._budget()),
        )
        self.records.append(ComparisonRecord(self.nodeid, self.variant.id, comparison.to_dict()))
        return comparison

    def expect_faster(self, comparison: Comparison, by: float = 1.0) -> str:
        """Hold a comparison to "B faster than A by more than ``by``" on its evidence (see
        :meth:`expect_at_least`). Returns ``holds`` or ``inconclusive``."""
        __tracebackhide__ = True
        what = f"{comparison.name_b}'s speed-up over {comparison.name_a}"
        return self.expect_at_least(speedup(comparison), by, what, comparison.describe())

    def expect_at_least(
        self, measured: tuple[float, float, float], expected: float, what: str, details: str = ""
    ) -> str:
        """Hold a measured figure, ``(value, low, high)`` with its 95% interval, to "at least
        ``expected``" on its evidence: the test fails only where the whole interval lies below it; where
        the interval straddles it (a busy machine, a difference too small to tell), a
        :class:`~pytest_jaxperf.gating.JaxperfInconclusive` warning gives the figures. Returns ``holds``
        or ``inconclusive``.
        """
        __tracebackhide__ = True
        with as_outcome(self.variant.case_id):
            return hold_at_least(measured, expected, what, details)

    def no_recompile(self, *functions: Callable[..., Any], max_compiles: int = 0) -> CompileWatch:
        """A block that fails when ``functions`` (or, with none given, anything) compile in it.

        ``with jaxperf.no_recompile(fn): fn(x)`` raises on leaving the block if ``fn`` compiled more
        than ``max_compiles`` times inside it; pass ``jaxperf.wrap``-ed models to get the cause of each
        compile, or any jitted function to get JAX's explanation.
        """
        self._models.explain_cache_misses()
        return compile_watch(*functions, max_compiles=max_compiles)

    def record(self, name: str, value: float, unit: str) -> None:
        """Report a figure this test measured; shown under ``--jaxperf`` and written to the JSON."""
        self._figures([(name, value, unit, "", None)])

    def batch_sweep(
        self,
        model: Any,
        *example_args: Any,
        sizes: Sequence[int] = (1, 8, 64, 512),
        params: Any = None,
        **example_kwargs: Any,
    ) -> Sweep:
        """Throughput and latency of ``model`` per batch size, one compile per size, and the saturation.

        ``model`` is called as the example call is (keywords and static arguments as in :meth:`check`), in
        the case's precision (``@jaxperf.dtype``) and on one device (a batch of one shards over no mesh).
        Each example input's first row (axis 0 is the batch) is repeated to each size; a 0-d input (a
        position, a step) is passed as it is. Each point is reported as a figure.
        """
        __tracebackhide__ = True
        pattern, example_inputs = CallPattern.split(example_args, example_kwargs)
        timing = TimingConfig(target=self.settings.ci_target, budget_seconds=min(self._budget(), 1.0))
        with as_outcome(self.variant.case_id):
            # In the case's precision, on one device: a batch of one is no batch to shard.
            built = self._models.built(model, example_inputs, params, None, pattern, on_devices=False)
            name, sweep = swept(built, example_inputs, sizes, timing, self.variant)
        self._figures(sweep.figures(name))
        return sweep

    def pipeline(self, stage_one: Any, stage_two: Any, x: Any) -> tuple[Any, PipelineTiming]:
        """Stage one on device 0, stage two on device 1: the output, checked against one device, and
        the time of each stage and of the transfer between them (reported as figures).

        Skips with the reason when fewer than two devices exist.
        """
        __tracebackhide__ = True
        with as_outcome(self.variant.case_id):
            output, timing = pipelined(stage_one, stage_two, x, self.variant)
        self._figures(timing.figures())
        return output, timing

    # --- plugin side ------------------------------------------------------------------------------

    def unreported_violation(self) -> RecompileError | None:
        """A recompile failure raised inside the test but swallowed before it reached pytest."""
        return self._models.unreported_violation()

    def close(self) -> None:
        """Undo what the fixture changed in jax's configuration."""
        self._models.close()

    # --- helpers --------------------------------------------------------------------------------------

    @property
    def _case(self) -> Case:
        return Case(self.nodeid, self.spec, self.variant)

    def _kept(self, record: CheckRecord) -> CheckRecord:
        """The record kept for the session; a regression then fails the test."""
        __tracebackhide__ = True
        self.records.append(record)
        fail_on_regression(record, self.variant.id, self.settings)
        return record

    def _figures(self, figures: list[Figure]) -> None:
        for name, value, unit, model, batch in figures:
            self.records.append(
                FigureRecord(self.nodeid, self.variant.id, name, float(value), unit, model, batch)
            )

    def _keyed(self, record: CheckRecord) -> CheckRecord:
        # The same model checked twice in one test gets #2, #3: each keeps its own baseline.
        key, index = record.model, 1
        while key in self._keys:
            index += 1
            key = f"{record.model}#{index}"
        self._keys.add(key)
        return dataclasses.replace(record, key=key)

    def _budget(self) -> float:
        return budget_seconds(self.settings, self.spec.gate)
