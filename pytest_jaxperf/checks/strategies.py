"""Hypothesis inputs for the fidelity check: the example inputs' shapes and dtypes, other values.

Hypothesis draws a small description (:class:`InputCase`: a kind, a seed, a log-scale, a spike
position) and NumPy builds dense tensors from it. Drawing the tensors element by element would give
mostly repeated values (hypothesis's ``arrays`` is built for small examples: on 32×64 arrays the median
share of distinct values was under 1%, and one array in six was constant), and shrinking would work on
thousands of floats instead of a scale and a seed. Shapes and dtypes never change, so nothing
recompiles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
from hypothesis import strategies as st

from ..core.placement import committed_sharding
from ..core.program import is_prng_key
from ..specs import INPUT_KINDS as KINDS  # re-exported: the kinds the strategies draw

#: Largest finite float16.
FLOAT16_MAX = 65504.0
#: float16 only: inputs scaled so that the float32 model's largest intermediate is 5–50% of float16's
#: limit: float16 must stay finite there (it is judged on inf/NaN only).
FLOAT16_RANGE = "float16-range"
SPIKE_FACTOR = 100.0


@dataclass(frozen=True)
class InputCase:
    """One generated input: how its values are made."""

    kind: str
    seed: int
    log10_scale: float
    """Values are about ``10**log10_scale`` (for ``float16-range``, the fraction of float16's limit)."""
    spike: int = 0
    """Flat index of the spike (``spike`` kind)."""

    def describe(self, shape: tuple[int, ...] | None = None) -> str:
        """``scale 1e2, spike at [3, 17]``, as a failure message shows it."""
        if self.kind == "zero":
            return "all zeros"
        if self.kind == FLOAT16_RANGE:
            return f"scaled to {self.log10_scale:.0%} of float16's range in the model's largest intermediate"
        text = f"scale {10**self.log10_scale:.0e}".replace("e+0", "e").replace("e-0", "e-")
        if self.kind == "spike" and shape:
            position = [int(i) for i in np.unravel_index(self.spike % int(np.prod(shape)), shape)]
            text += f", spike ×{SPIKE_FACTOR:g} at {position}"
        elif self.kind != "gaussian":
            text += f", {self.kind}"
        return text


def input_cases(
    dtype: str,
    float16_range: bool,
    scale: tuple[float, float] = (1e-3, 1e3),
    kinds: tuple[str, ...] = KINDS,
) -> st.SearchStrategy[InputCase]:
    """Cases for a variant: each of ``kinds`` over ``scale`` (magnitudes); for float16 also its range's
    top."""
    ordinary = st.builds(
        InputCase,
        kind=st.sampled_from(kinds),
        seed=st.integers(0, 2**32 - 1),
        log10_scale=st.floats(math.log10(scale[0]), math.log10(scale[1])),
        spike=st.integers(0, 2**31 - 1),
    )
    if dtype != "float16" or not float16_range:
        return ordinary
    near_limit = st.builds(
        InputCase,
        kind=st.just(FLOAT16_RANGE),
        seed=st.integers(0, 2**32 - 1),
        # At most half the limit: the gain is estimated on another draw, and a float32 intermediate
        # beyond float16's range would overflow in any float16 model.
        log10_scale=st.floats(0.05, 0.5),
    )
    return st.one_of(ordinary, near_limit)


def build_inputs(
    case: InputCase,
    example_inputs: tuple[Any, ...],
    float16_gain: float = 1.0,
    limit: float | None = None,
    int_range: tuple[int, int] | None = None,
) -> tuple[Any, ...]:
    """The example inputs with every floating-point and integer array's values replaced as ``case`` says.

    Integer inputs (token ids, positions) take values within ``int_range``, both ends included, or
    within their own range in the example: every value drawn is one the example shows valid. Boolean
    inputs (masks), PRNG keys and non-array leaves are kept. ``float16_gain`` is the float32 model's
    largest intermediate per unit of input, for ``float16-range`` cases; ``limit`` clips the values
    (float16's range: an input float16 cannot hold is not the model's fault).
    """

    leaves, tree = jax.tree_util.tree_flatten(example_inputs)
    built = []
    for index, leaf in enumerate(leaves):
        if not isinstance(leaf, jax.Array | np.ndarray) or is_prng_key(leaf):
            built.append(
                leaf
            )  # a Python number inside an input, a PRNG key (an nnx.Rngs passed in): as given
            continue
        dtype = np.dtype(leaf.dtype)
        if np.issubdtype(dtype, np.integer):
            low, high = int_range or integer_range(leaf)
            built.append(_placed_like(_integers(case, np.shape(leaf), index, low, high).astype(dtype), leaf))
            continue
        if not np.issubdtype(dtype, np.floating) and dtype.name != "bfloat16":
            built.append(leaf)
            continue
        values = _values(case, np.shape(leaf), index, float16_gain)
        if limit is not None:
            values = np.clip(values, -limit, limit)
        built.append(_placed_like(values.astype(dtype), leaf))
    return tuple(jax.tree_util.tree_unflatten(tree, built))


def _placed_like(values: np.ndarray, example: Any) -> Any:
    # Where the example is committed to its sharding (an array made under jax.set_mesh), so is the
    # generated input: a model reading jax.typeof(x).sharding sees the mesh its example had, where a host
    # array carries an empty one. An uncommitted example stays a host array: committing it would be
    # another compile.
    sharding = committed_sharding(example)
    return values if sharding is None else jax.device_put(values, sharding)


def integer_range(leaf: Any) -> tuple[int, int]:
    """The lowest and highest value of an integer example input."""
    values = np.asarray(leaf)
    return (int(values.min()), int(values.max())) if values.size else (0, 0)


def _integers(case: InputCase, shape: tuple[int, ...], index: int, low: int, high: int) -> np.ndarray:
    """Integers within [low, high]: the edges themselves for the ``zero`` and ``constant`` kinds (the
    lowest; the lowest or the highest), the highest at one place for ``spike``, else uniform."""
    rng = np.random.default_rng([case.seed, index])
    if case.kind == "zero":
        return np.full(shape, low, np.int64)
    if case.kind in ("constant", FLOAT16_RANGE):
        return np.full(shape, high if case.seed % 2 else low, np.int64)
    values: np.ndarray = rng.integers(low, high, size=shape, endpoint=True, dtype=np.int64)
    if case.kind == "spike" and values.size:
        values.flat[case.spike % values.size] = high
    return values


def _values(case: InputCase, shape: tuple[int, ...], index: int, gain: float) -> np.ndarray:
    rng = np.random.default_rng([case.seed, index])
    if case.kind == "zero":
        return np.zeros(shape, np.float64)
    if case.kind == FLOAT16_RANGE:
        unit = rng.standard_normal(shape)
        peak = float(np.max(np.abs(unit))) or 1.0
        return np.asarray(unit / peak * (case.log10_scale * FLOAT16_MAX / max(gain, 1e-30)))
    scale = 10.0**case.log10_scale
    if case.kind == "constant":
        return np.full(shape, scale * (1 if case.seed % 2 else -1), np.float64)
    values: np.ndarray = rng.standard_normal(shape) * scale
    if case.kind == "positive":
        return np.asarray(np.abs(values))
    if case.kind == "spike" and values.size:
        values.flat[case.spike % values.size] = SPIKE_FACTOR * scale
    return values
