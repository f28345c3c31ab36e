"""How close a variant's output is to float32's: the metrics of two outputs, computed on the host in
float64, and what fails them.

* **output SQNR** ``20·log10(‖ref‖ / ‖out − ref‖)``, the gate (the formula of torch's numeric suite);
* **worst-channel SQNR** (last axis): one dominant channel can hide channels that were destroyed
  (a measured case: 39.3 dB overall while 63 of 64 channels were at 0 dB);
* **non-finite values** where float32 is finite (float16 overflow);
* reported, not gated: max abs error, relative L2, cosine (blind to scale errors: an output 127× too
  large has cosine 1.0), and element-wise relative error is not used at all (near-zero outputs
  dominate it).

A zero-signal reference (all zeros) is judged by max abs error against the variant's resolution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

if TYPE_CHECKING:
    import contextlib

#: The "a channel was destroyed" floor, low on purpose: per-channel SQNR of low-energy channels is noisy
#: (a correct int8 run measured 19.8 dB on its worst channel).
WORST_CHANNEL_FLOOR_DB = 10.0
#: Max abs error allowed where float32's output is exactly zero: about the variant's resolution.
ZERO_SIGNAL_TOLERANCE = {"float16": 2**-10, "bfloat16": 2**-7, "int8": 2 / 127, "int8-dynamic": 2 / 127}
#: A channel's error is measured against at least this share of the mean channel energy: a channel whose
#: own signal is near zero (a logit near 0 on every row, a saturated sigmoid) would otherwise fail on
#: errors far below the output's scale. A destroyed channel of ordinary energy still reads about 0 dB, and
#: one with a tenth of the average energy at most 10 dB.
CHANNEL_SIGNAL_FLOOR = 0.1


def highest_precision() -> contextlib.AbstractContextManager[Any]:
    """float32 matmuls as float32 (not TF32 or bf16 passes): the reference's precision."""
    manager: contextlib.AbstractContextManager[Any] = jax.default_matmul_precision("highest")
    return manager


@dataclass(frozen=True)
class OutputComparison:
    """How close a variant's output is to float32's, computed in float64."""

    sqnr_db: float
    worst_channel_db: float
    worst_channel: int
    max_abs: float
    rel_l2: float
    cosine: float
    nonfinite: int
    """Values that are inf/NaN in the variant and finite in float32."""
    zero_signal: bool
    """float32's output is all zeros: SQNR is undefined, max abs error judges."""

    def describe(self) -> str:
        return (
            f"SQNR {format_db(self.sqnr_db)}, worst channel {format_db(self.worst_channel_db)}, "
            f"max abs error {self.max_abs:.3g}, relative L2 {self.rel_l2:.3g}, cosine {self.cosine:.6f}"
        )


def format_db(value: float) -> str:
    """``41.3 dB``, or ``inf dB (exact)`` for an exact match."""
    return "inf dB (exact)" if math.isinf(value) and value > 0 else f"{value:.1f} dB"


def nan_values(output: Any) -> str | None:
    """Where ``output`` holds NaN (``output ['logits'] holds 3 NaN of 784 values``); None where none.
    An infinity is no defect here: masked logits and log-probabilities hold -inf by design."""
    found = []
    flat, _ = jax.tree_util.tree_flatten_with_path(output)
    for path, leaf in flat:
        if not isinstance(leaf, jax.Array | np.ndarray) or not jnp.issubdtype(leaf.dtype, jnp.floating):
            continue
        nans = int(np.isnan(np.asarray(jax.device_get(leaf)).astype(np.float64)).sum())
        if nans:
            where = f"output {jax.tree_util.keystr(path)}" if path else "the output"
            found.append(f"{where} holds {nans} NaN of {np.size(leaf)} values")
    return "; ".join(found) or None


def host_leaves(tree: Any) -> list[np.ndarray]:
    """Every array leaf of ``tree`` on the host, in float64."""
    return [np.asarray(jax.device_get(leaf)).astype(np.float64) for leaf in jax.tree_util.tree_leaves(tree)]


def compare(reference: Any, output: Any) -> OutputComparison:
    """Compare two outputs (arrays or pytrees of the same structure)."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _compare(host_leaves(reference), host_leaves(output))


def _compare(refs: list[np.ndarray], outs: list[np.ndarray]) -> OutputComparison:
    if len(refs) != len(outs) or any(r.shape != o.shape for r, o in zip(refs, outs, strict=True)):
        raise ValueError(
            f"the variant's output {[o.shape for o in outs]} does not match float32's "
            f"{[r.shape for r in refs]}"
        )
    finite = [np.isfinite(r) for r in refs]
    nonfinite = sum(int(np.sum(f & ~np.isfinite(o))) for f, o in zip(finite, outs, strict=True))
    ref = np.concatenate([np.where(f, r, 0.0).ravel() for f, r in zip(finite, refs, strict=True)])
    out = np.concatenate([np.where(f, o, 0.0).ravel() for f, o in zip(finite, outs, strict=True)])
    out = np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
    error = out - ref
    signal = float(np.sum(ref**2))
    noise = float(np.sum(error**2))
    worst, worst_channel = math.inf, -1
    for r, o in zip(refs, outs, strict=True):
        db, channel = _worst_channel(np.nan_to_num(r), np.nan_to_num(o))
        if db < worst:
            worst, worst_channel = db, channel
    norms = math.sqrt(signal) * math.sqrt(float(np.sum(out**2)))
    return OutputComparison(
        sqnr_db=_sqnr(signal, noise),
        worst_channel_db=worst,
        worst_channel=worst_channel,
        max_abs=float(np.max(np.abs(error))) if error.size else 0.0,
        rel_l2=math.sqrt(noise / signal) if signal > 0 else (0.0 if noise == 0 else math.inf),
        cosine=float(np.dot(ref, out) / norms) if norms > 0 else (1.0 if noise == 0 else 0.0),
        nonfinite=nonfinite,
        zero_signal=signal == 0.0,
    )


def _sqnr(signal: float, noise: float) -> float:
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def _worst_channel(reference: np.ndarray, output: np.ndarray) -> tuple[float, int]:
    if reference.ndim == 0 or reference.size == 0:
        return math.inf, -1
    channels = reference.shape[-1]
    ref = reference.reshape(-1, channels)
    error = output.reshape(-1, channels) - ref
    signal = np.sum(ref**2, axis=0)
    noise = np.sum(error**2, axis=0)
    mean = float(np.mean(signal))
    if mean == 0.0:
        return math.inf, -1
    signal = np.maximum(signal, CHANNEL_SIGNAL_FLOOR * mean)
    db = np.where(noise > 0, 10.0 * np.log10(signal / np.where(noise > 0, noise, 1.0)), np.inf)
    channel = int(np.argmin(db))
    return float(db[channel]), channel


def output_problem(
    comparison: OutputComparison, dtype: str, floor_db: float, *, finite_only: bool = False
) -> str | None:
    """What is wrong with this comparison for ``dtype``, or None when it passes.

    ``finite_only``: judge only inf/NaN (inputs at the top of float16's range, where float16's
    relative precision is what it is, but overflow is a bug).
    """
    if comparison.nonfinite:
        return f"{comparison.nonfinite} non-finite output values where float32's are finite"
    if finite_only:
        return None
    if comparison.zero_signal:
        tolerance = ZERO_SIGNAL_TOLERANCE[dtype]
        if comparison.max_abs > tolerance:
            return (
                f"float32's output is all zeros, the variant's is off by up to {comparison.max_abs:.3g} "
                f"(> {tolerance:.3g})"
            )
        return None
    if comparison.sqnr_db < floor_db:
        return f"output SQNR {format_db(comparison.sqnr_db)} < {floor_db:.1f} dB"
    if comparison.worst_channel_db < WORST_CHANNEL_FLOOR_DB:
        return (
            f"output channel {comparison.worst_channel}: SQNR {format_db(comparison.worst_channel_db)} < "
            f"{WORST_CHANNEL_FLOOR_DB:.1f} dB (output SQNR {format_db(comparison.sqnr_db)})"
        )
    return None
