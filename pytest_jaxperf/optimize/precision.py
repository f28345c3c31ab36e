"""Mixed precision: the model computing in bfloat16 or float16 throughout, parameters and activations.

For a ``flax.nnx`` module every flax layer gets the low ``dtype`` (flax's compute dtype: its
``promote_dtype`` casts the layer's inputs and parameters to it, and the normalization layers still
compute their statistics in float32, as flax does), and the parameters are stored in the low dtype, except
those of normalization layers, which flax keeps in float32. The inputs are cast where the model is
called (:func:`~pytest_jaxperf.core.program.cast_floating`). Casting only the input is *not* mixed
precision: JAX promotes ``float16 @ float32`` back to float32 (see :mod:`pytest_jaxperf.checks.audit`,
which catches it).

For a function with a params pytree every floating parameter and input is cast: the function then
computes in the low dtype unless it promotes back itself, which the audit reports.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ..core.program import cast_floating, is_floating

#: Canonical dtype name → the JAX dtype the model computes in.
COMPUTE_DTYPES = {"bfloat16": jnp.bfloat16, "float16": jnp.float16, "float32": jnp.float32}


def _cast(value: Any, dtype: Any) -> Any:
    """A floating parameter (an ``nnx.Variable`` or a plain array) in ``dtype``; anything else as it is."""
    array = value.get_value() if hasattr(value, "get_value") else value
    if not is_floating(array):
        return value
    return value.replace(array.astype(dtype)) if hasattr(value, "get_value") else array.astype(dtype)


def mixed_precision(model: Any, dtype: Any, *, params: Any = None) -> tuple[Any, Any]:
    """``(model, params)`` computing in ``dtype`` (``jnp.bfloat16`` or ``jnp.float16``).

    An NNX module is cloned (the original is left as it was); a function is returned as it is, with
    its params cast. Call the result on inputs cast with :func:`cast_floating`.
    """
    from flax import nnx

    if not isinstance(model, nnx.Module):
        return model, cast_floating(params, dtype)
    clone = nnx.clone(model)
    norms = (nnx.LayerNorm, nnx.RMSNorm, nnx.GroupNorm, nnx.BatchNorm)
    kept_in_float32 = set()
    for path, sub in nnx.iter_modules(clone):
        if isinstance(sub, norms):
            kept_in_float32.add(tuple(path))
        # Flax layers carry both: dtype (compute) and param_dtype (storage).
        if hasattr(sub, "dtype") and hasattr(sub, "param_dtype"):
            sub.dtype = dtype
    # Plain array attributes (a scale, a table: state that is no nnx.Variable) are the model's constants,
    # stored in the low dtype like its parameters.
    weights = nnx.Any(nnx.Param, lambda _, value: isinstance(value, jax.Array))
    graphdef, parameters, *rest = nnx.split(clone, weights, ...)
    flat = nnx.to_flat_state(parameters)
    cast = [
        (path, _cast(variable, dtype)) if tuple(path[:-1]) not in kept_in_float32 else (path, variable)
        for path, variable in flat
    ]
    return nnx.merge(graphdef, nnx.from_flat_state(cast), *rest), None
