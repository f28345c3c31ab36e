"""The ``jaxperf`` fixture object: ``wrap`` and ``check`` orchestrate the optimizations and the checks."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import pytest

from .config import DEFAULT_VARIANT, TestSpec, Variant
from .records import CheckRecord, FigureRecord, Record
from .settings import PluginConfig

if TYPE_CHECKING:
    from collections.abc import Callable

    from .checks.compiles import CompileWatch, RecompileError
    from .optimize.jit import WrappedModel


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
    ) -> None:
        self.nodeid = nodeid
        self.spec = spec
        self.variant = variant
        self.config = config or PluginConfig()
        self.records: list[Record] = []
        self._wrapped: list[tuple[tuple[Any, Any], WrappedModel]] = []
        self._explaining: contextlib.ExitStack | None = None

    # --- public API -------------------------------------------------------------------------------

    def wrap(self, model: Any, *, params: Any = None) -> WrappedModel:
        """The model with the active optimizations applied, as a callable of the inputs.

        ``model`` is a ``flax.nnx.Module`` or a function; with ``params`` the function is called as
        ``fn(params, *inputs)``. Under ``@jaxperf.jit_warm`` the callable is JIT-compiled and watched:
        a compile beyond ``max_compiles`` raises, naming what changed since the earlier compiles.
        """
        __tracebackhide__ = True
        self._require_supported_variant()
        # The same model (and params) wraps to the same callable: check() then wrap() share one
        # compiled function and one compile history, as a user reusing the model would expect.
        for (known_model, known_params), known in self._wrapped:
            if known_model is model and known_params is params:
                return known
        from .optimize.jit import wrap_model

        jit_spec = self.spec.jit_warm
        if jit_spec is not None:
            self._explain_cache_misses()
        wrapped = wrap_model(
            model,
            params=params,
            jit=jit_spec is not None,
            max_compiles=jit_spec.max_compiles if jit_spec else None,
            # The fixture turns JAX's explanations on for the whole test: no per-call toggling.
            explain=False,
        )
        self._wrapped.append(((model, params), wrapped))
        return wrapped

    def check(self, model: Any, *example_inputs: Any, params: Any = None) -> CheckRecord:
        """Run every check the test's markers ask for on ``model`` called with ``example_inputs``.

        The shapes and dtypes of the example inputs are the contract: with ``@jaxperf.jit_warm`` the
        model is compiled and called ``warmup`` times on them, and any further compile fails the test.
        Returns the record of what was measured (compile time, first call, steady calls).
        """
        __tracebackhide__ = True
        if not example_inputs:
            raise TypeError(
                "jaxperf.check(model, *example_inputs) needs at least one example input: "
                "its shapes and dtypes are what the model is compiled and checked for"
            )
        from .checks.signature import describe_call
        from .optimize.jit import warm_up

        wrapped = self.wrap(model, params=params)
        calls = self.spec.jit_warm.warmup if self.spec.jit_warm else 1
        timings = warm_up(wrapped, example_inputs, calls)
        signature = describe_call(lambda *inputs: None, example_inputs, {})
        inputs = "; ".join(
            f"{path.removeprefix('inputs')}: {leaf.describe()}" for path, leaf in signature.items()
        )
        record = CheckRecord(
            nodeid=self.nodeid,
            variant=self.variant.id,
            model=wrapped.name,
            inputs=inputs,
            jit=wrapped.jitted,
            compiles=len(wrapped.watched.compiles) if wrapped.watched else 0,
            compile_seconds=timings.compile_seconds,
            first_call_seconds=timings.first_call_seconds,
            steady_call_seconds=timings.steady_call_seconds,
        )
        self.records.append(record)
        return record

    def no_recompile(self, *functions: Callable[..., Any], max_compiles: int = 0) -> CompileWatch:
        """A block that fails when ``functions`` (or, with none given, anything) compile in it.

        ``with jaxperf.no_recompile(fn): fn(x)`` raises on leaving the block if ``fn`` compiled more
        than ``max_compiles`` times inside it; pass ``jaxperf.wrap``-ed models to get the cause of each
        compile, or any jitted function to get JAX's explanation.
        """
        from .checks.compiles import CompileWatch
        from .optimize.jit import WrappedModel

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

    # --- plugin side ------------------------------------------------------------------------------

    def unreported_violation(self) -> RecompileError | None:
        """A recompile failure raised inside the test but swallowed before it reached pytest."""
        for _, wrapped in self._wrapped:
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
            from .checks.compiles import explaining_cache_misses

            self._explaining = contextlib.ExitStack()
            self._explaining.enter_context(explaining_cache_misses())

    def _require_supported_variant(self) -> None:
        __tracebackhide__ = True
        # The markers are validated and expanded into cases now; applying these variants comes with
        # their own capabilities. Until then a case must not pass as if it had run in that variant.
        unsupported = []
        if self.variant.dtype != "float32":
            unsupported.append(f"compute dtype {self.variant.dtype} (@jaxperf.dtype)")
        if self.variant.devices != 1:
            unsupported.append(f"{self.variant.devices} devices (@jaxperf.devices)")
        if self.spec.memory is not None:
            unsupported.append(f"a memory budget of {self.spec.memory.max_bytes} bytes (@jaxperf.memory)")
        if unsupported:
            pytest.fail(
                f"jaxperf {self.variant.case_id}: this version of pytest-jaxperf validates but does not "
                f"yet apply {', '.join(unsupported)}; the case cannot run as asked",
                pytrace=False,
            )
