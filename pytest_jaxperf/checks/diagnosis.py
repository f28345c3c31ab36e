"""The per-layer diagnosis of a failing input: where a low-precision variant loses precision.

The model is run again, op by op, on the failing input (:mod:`pytest_jaxperf.core.program`) and each
layer (the operations of one module) is compared twice: along the variant's own run (*propagated*: where
error accumulates) and fed the float32 run's inputs (*shadow*: the layer that loses precision); the first
operation that turned finite values into inf or NaN is named.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from ..core.program import Const, execute, innermost_module, leaf_env
from .outputs import OutputComparison, compare, format_db, highest_precision

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..core.program import Program
    from ..core.wrap import WrappedModel


@dataclass(frozen=True)
class _Layer:
    name: str
    positions: list[int]
    output: int
    activations: list[int]
    """Values the layer reads that come from outside it and not from the parameters alone, in order."""


def is_float_array(value: Any) -> bool:
    dtype = getattr(value, "dtype", None)
    # jnp's test knows bfloat16 and PRNG key dtypes (an nnx.Rngs in the state), which numpy's rejects.
    return dtype is not None and bool(jnp.issubdtype(dtype, jnp.floating))


def run_op_by_op(
    program: Program,
    params: Any,
    inputs: Sequence[Any],
    first_nonfinite: list[int] | None = None,
) -> dict[int, Any]:
    """Every value of ``program`` on these inputs (op by op); notes the first op to create inf/NaN."""

    def watch(position: int, equation: Any, values: list[Any], results: list[Any]) -> None:
        if first_nonfinite is not None and not first_nonfinite and _creates_nonfinite(values, results):
            first_nonfinite.append(position)

    env = leaf_env(program, jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(tuple(inputs)))
    return execute(program, env, observe=watch)


def _creates_nonfinite(values: list[Any], results: list[Any]) -> bool:
    def finite(value: Any) -> bool:
        return not is_float_array(value) or bool(np.all(np.isfinite(np.asarray(value, np.float64))))

    return all(finite(v) for v in values) and not all(finite(r) for r in results)


def _layers(program: Program) -> dict[str, _Layer]:
    weights = program.weights()
    grouped: dict[str, list[int]] = {}
    for position, equation in enumerate(program.equations):
        name = innermost_module(equation.scope)
        if name:
            grouped.setdefault(name, []).append(position)
    layers = {}
    for name, positions in grouped.items():
        produced = {out for p in positions for out in program.equations[p].outputs}
        activations: list[int] = []
        for p in positions:
            for operand in program.equations[p].inputs:
                if isinstance(operand, Const) or operand in produced or operand in weights:
                    continue
                if operand not in activations:
                    activations.append(operand)
        output = program.equations[positions[-1]].outputs[0]
        layers[name] = _Layer(name, positions, output, activations)
    return layers


def _shadow(program: Program, layer: _Layer, env: dict[int, Any], fed: list[Any]) -> Any:
    """The layer's output when its activation inputs are ``fed`` (the float32 run's, cast)."""
    local = {**env, **dict(zip(layer.activations, fed, strict=True))}
    return execute(program, local, layer.positions)[layer.output]


def diagnose(reference: WrappedModel, variant: WrappedModel, inputs: tuple[Any, ...]) -> list[str]:
    """Per-layer lines for a failing input: the worst layers (shadow and propagated), the first inf/NaN."""
    ref_program = reference.program(*inputs)
    var_program = variant.program(*inputs)
    with highest_precision():
        ref_env = run_op_by_op(ref_program, reference.params, inputs)
    first_bad: list[int] = []
    var_env = run_op_by_op(var_program, variant.params, inputs, first_bad)
    ref_layers, var_layers = _layers(ref_program), _layers(var_program)
    shadow: list[tuple[str, OutputComparison]] = []
    propagated: list[tuple[str, OutputComparison]] = []
    for name, layer in var_layers.items():
        ref_layer = ref_layers.get(name)
        if ref_layer is None:
            continue
        expected, actual = ref_env[ref_layer.output], var_env[layer.output]
        if np.shape(expected) != np.shape(actual) or not is_float_array(expected):
            continue
        propagated.append((name, compare(expected, actual)))
        if len(ref_layer.activations) != len(layer.activations):
            continue
        fed = []
        for ref_operand, var_operand in zip(ref_layer.activations, layer.activations, strict=True):
            value, target = ref_env[ref_operand], var_env[var_operand]
            if np.shape(value) != np.shape(target):
                break
            fed.append(jnp.asarray(value).astype(target.dtype))
        else:
            shadow.append((name, compare(expected, _shadow(var_program, layer, var_env, fed))))
    lines = []
    if first_bad:
        equation = var_program.equations[first_bad[0]]
        where = innermost_module(equation.scope) or equation.scope or "the model"
        lines.append(f"first non-finite value: {where} ({equation.name})")
    if shadow:
        lines.append("worst layers fed float32's inputs (local): " + _worst(shadow))
    if propagated:
        lines.append("worst layers along the variant's own run (propagated): " + _worst(propagated))
    if not shadow and not propagated:
        lines.append("no per-layer diagnosis: the model has no module layers to compare (a plain function)")
    return lines


def _worst(layers: list[tuple[str, OutputComparison]], count: int = 3) -> str:
    def key(item: tuple[str, OutputComparison]) -> tuple[int, float]:
        c = item[1]
        return (-c.nonfinite, min(c.sqnr_db, c.worst_channel_db + 30.0))

    ranked = sorted(layers, key=key)[:count]
    return "; ".join(
        f"{name}: "
        + (f"{c.nonfinite} non-finite values" if c.nonfinite else f"SQNR {format_db(c.sqnr_db)}")
        + f", worst channel {format_db(c.worst_channel_db)}"
        for name, c in ranked
    )
