"""One test case's variant of the model: its precision (mixed, int8, or the user's own conversion) and
the mesh its batch is sharded over, built before anything is wrapped or compiled.

``build_variant`` knows nothing of pytest: a variant this machine cannot give (a platform, a device count,
a model the built-in int8 quantizer cannot reach) raises :class:`~pytest_jaxperf.errors.CaseUnavailable`,
which the fixture turns into a skip naming the case.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jax

from ..core.call import PLAIN, CallPattern, closed_over_modules
from ..core.compiles import function_name
from ..core.model import describe_model_error, is_nnx_module
from ..core.placement import DeviceShortage, ambient_mesh, batch_mesh
from ..core.wrap import wrap_model
from ..errors import CaseUnavailable
from .precision import COMPUTE_DTYPES, mixed_precision
from .quantize import QuantizationError, quantize_int8

if TYPE_CHECKING:
    from collections.abc import Callable

    from jax.sharding import Mesh

    from ..core.wrap import WrappedModel
    from ..specs import DevicesSpec, Variant


@dataclass(frozen=True)
class BuiltVariant:
    """What a test case's variant of the model is: enough to wrap it, or to build it again on one device."""

    model: Any
    params: Any = None
    cast_inputs: Any = None
    """The dtype the inputs are cast to inside the model (mixed precision), or None."""
    name: str | None = None
    left_in_float: tuple[str, ...] = ()
    """Matmuls the built-in int8 quantizer could not reach (inside scan/while/cond), with the reason."""
    mesh: Mesh | None = None
    """The mesh the batch is sharded over (None: one device)."""
    float32_model: Any = None
    """The model the variant was built from, as given (the float32 reference)."""
    float32_params: Any = None
    pattern: CallPattern = PLAIN
    """How the model is called around its inputs (keywords, static arguments)."""

    def on_one_device(self) -> BuiltVariant:
        """The same variant (its precision, its int8 weights) without the mesh."""
        return dataclasses.replace(self, mesh=None)

    def wrap(self, *, jit: bool = True, max_compiles: int | None = None) -> WrappedModel:
        """The variant as a callable of its inputs (see :func:`~pytest_jaxperf.core.wrap.wrap_model`)."""
        __tracebackhide__ = True
        return wrap_model(
            self.model,
            params=self.params,
            jit=jit,
            max_compiles=max_compiles,
            # The case (case_models) turns JAX's explanations on for the whole test: no per-call toggling.
            explain=False,
            mesh=self.mesh,
            cast_inputs=self.cast_inputs,
            name=self.name,
            pattern=self.pattern,
        )


def build_variant(
    model: Any,
    example_inputs: tuple[Any, ...],
    variant: Variant,
    *,
    params: Any = None,
    convert: Callable[..., Any] | None = None,
    devices: DevicesSpec | None = None,
    pattern: CallPattern = PLAIN,
) -> BuiltVariant:
    """The model as ``variant`` runs it: in its precision, over its devices; called as ``pattern`` says
    around ``example_inputs`` (see :mod:`~pytest_jaxperf.core.call`).

    Raises TypeError for a model jaxperf cannot run or a ``convert`` that breaks its contract, and
    :class:`~pytest_jaxperf.errors.CaseUnavailable` for a variant this machine cannot give.
    """
    __tracebackhide__ = True
    built = _in_precision(model, params, example_inputs, convert, variant, pattern)
    mesh = device_mesh(devices, variant)
    return dataclasses.replace(built, mesh=mesh, float32_model=model, float32_params=params, pattern=pattern)


def _in_precision(
    model: Any,
    params: Any,
    example_inputs: tuple[Any, ...],
    convert: Callable[..., Any] | None,
    variant: Variant,
    pattern: CallPattern,
) -> BuiltVariant:
    __tracebackhide__ = True
    dtype = variant.dtype
    if dtype == "float32":
        return BuiltVariant(model, params)
    error = describe_model_error(model, params)
    if error:
        raise TypeError(error)
    # With params= the function takes its weights as arguments, whatever else it reaches.
    reaches = not is_nnx_module(model) and convert is None and params is None
    closed = closed_over_modules(model) if reaches else []
    if closed:
        raise TypeError(
            f"jaxperf {variant.case_id}: {function_name(model)} closes over the flax.nnx module "
            f"{', '.join(closed)}: its weights are constants of the program, which the {dtype} variant "
            "cannot cast or quantize. Pass the module itself, with the call's other arguments as "
            "keywords: jaxperf.check(model, x, rngs=None, deterministic=True)"
        )
    # The variant keeps the model's name (a converted function has its own).
    name = type(model).__name__ if is_nnx_module(model) else function_name(model)
    if convert is not None and params is None:
        from flax import nnx

        # A copy: a conversion that edits the module in place (swapping its layers, say) would
        # otherwise change the float32 reference too, and the fidelity check would compare the
        # variant with itself.
        return BuiltVariant(convert(nnx.clone(model) if is_nnx_module(model) else model), name=name)
    if convert is not None:
        converted = convert(model, params)
        if not (isinstance(converted, tuple) and len(converted) == 2):
            raise TypeError(
                f"convert(fn, params) must return (fn, params) for a function model, got {converted!r}"
            )
        return BuiltVariant(converted[0], converted[1], name=name)
    if dtype in ("bfloat16", "float16"):
        low_model, low_params = mixed_precision(model, COMPUTE_DTYPES[dtype], params=params)
        return BuiltVariant(low_model, low_params, COMPUTE_DTYPES[dtype], name)
    if not example_inputs:
        raise TypeError(
            f"jaxperf {variant.case_id}: int8 quantization needs example inputs to see how each "
            "weight is used: jaxperf.wrap(model, *example_inputs)"
        )
    try:
        quantized = quantize_int8(
            model, *example_inputs, params=params, dynamic=dtype == "int8-dynamic", pattern=pattern
        )
    except QuantizationError as failure:
        raise CaseUnavailable(str(failure)) from None
    return BuiltVariant(
        quantized.apply,
        quantized.params,
        name=quantized.name,
        left_in_float=tuple(f"{f.name} ({f.reason})" for f in quantized.left_in_float),
    )


def device_mesh(devices: DevicesSpec | None, variant: Variant) -> Mesh | None:
    """The mesh for the variant's device count (None for one device); CaseUnavailable when the platform
    or the devices cannot be had."""
    __tracebackhide__ = True
    if devices is None:
        return None
    backend = jax.default_backend()
    if devices.platform and devices.platform != backend:
        raise CaseUnavailable(f"needs platform {devices.platform}, running on {backend}")
    if variant.devices == 1:
        return None
    ambient = ambient_mesh()
    if ambient is not None:
        # The model's own shardings name the mesh it set (jax.set_mesh): the batch is split over that
        # mesh, never over one of the plugin's, which the model's explicit shardings would not match.
        if ambient.devices.size != variant.devices:
            shape = ", ".join(f"{name}: {size}" for name, size in ambient.shape.items())
            raise CaseUnavailable(
                f"the model runs under the mesh jax.set_mesh gave ({shape}), of {ambient.devices.size} "
                f"device(s), not {variant.devices}: list that count in @jaxperf.devices"
            )
        return ambient
    try:
        return batch_mesh(variant.devices, devices.platform)
    except DeviceShortage as error:
        raise CaseUnavailable(str(error)) from None
