"""The models one test case wraps: each wrapped once in the case's variant (its precision, its devices), so
that ``check`` then ``wrap`` of the same model share one compiled function and one compile history, as a
user reusing the model would expect; and JAX's cache-miss explanations, on while the case compiles.

Pytest-free: a variant this machine cannot give raises
:class:`~pytest_jaxperf.errors.CaseUnavailable`, for the fixture to turn into the test's outcome.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from .core.call import PLAIN
from .core.compiles import explaining_cache_misses
from .core.model import as_module, same_model
from .optimize.variant import build_variant

if TYPE_CHECKING:
    from collections.abc import Callable

    from .core.call import CallPattern
    from .core.compiles import RecompileError
    from .core.wrap import WrappedModel
    from .optimize.variant import BuiltVariant
    from .specs import TestSpec, Variant


class CaseModels:
    """The models a test case has wrapped in its variant, each once."""

    def __init__(self, spec: TestSpec, variant: Variant) -> None:
        self.spec = spec
        self.variant = variant
        self._wrapped: list[tuple[tuple[Any, Any, Any], WrappedModel, BuiltVariant]] = []
        self._explaining: contextlib.ExitStack | None = None

    def wrapped(
        self,
        model: Any,
        example_inputs: tuple[Any, ...],
        params: Any,
        convert: Callable[..., Any] | None,
        pattern: CallPattern,
    ) -> tuple[WrappedModel, BuiltVariant]:
        """The model wrapped in the case's variant, and the variant; the same model wraps once."""
        __tracebackhide__ = True
        for (known_model, known_params, known_convert), known, built in self._wrapped:
            # Inputs alone, positionally (or no example call at all): one callable serves every such call.
            same_call = built.pattern == pattern or (built.pattern.plain and pattern.plain)
            if (
                same_model(known_model, model)
                and known_params is params
                and known_convert is convert
                and same_call
            ):
                return known, built
        built = self.built(model, example_inputs, params, convert, pattern)
        jit_spec = self.spec.jit_warm
        # Sharding over devices is a compiled program: devices() implies JIT.
        jit = jit_spec is not None or built.mesh is not None
        if jit:
            self.explain_cache_misses()
        wrapped = built.wrap(jit=jit, max_compiles=jit_spec.max_compiles if jit_spec else None)
        self._wrapped.append(((model, params, convert), wrapped, built))
        return wrapped, built

    def built(
        self,
        model: Any,
        example_inputs: tuple[Any, ...],
        params: Any,
        convert: Callable[..., Any] | None,
        pattern: CallPattern,
        *,
        on_devices: bool = True,
    ) -> BuiltVariant:
        """The model as the case's variant runs it (not wrapped, not kept); in its precision alone, on one
        device, without ``on_devices``."""
        __tracebackhide__ = True
        return build_variant(
            as_module(model),
            example_inputs,
            self.variant,
            params=params,
            convert=convert,
            devices=self.spec.devices if on_devices else None,
            pattern=pattern if example_inputs else PLAIN,
        )

    def explain_cache_misses(self) -> None:
        """JAX's cache-miss explanations on for the rest of the case (see :meth:`close`)."""
        # On for the rest of the test, so that watched calls need not toggle it each time.
        if self._explaining is None:
            self._explaining = contextlib.ExitStack()
            self._explaining.enter_context(explaining_cache_misses())

    def unreported_violation(self) -> RecompileError | None:
        """A recompile failure raised inside the test but swallowed before it reached pytest."""
        for _, wrapped, _ in self._wrapped:
            if wrapped.watched is not None and wrapped.watched.violation is not None:
                return wrapped.watched.violation
        return None

    def close(self) -> None:
        """Undo what the case changed in jax's configuration."""
        if self._explaining is not None:
            self._explaining.close()
            self._explaining = None
