"""Numerical fidelity: a low-precision variant against the same model in float32, on generated inputs.

The reference runs in float32 with ``jax.default_matmul_precision("highest")`` (plain float32 matmuls
on GPUs use TF32, as noisy as float16). Every comparison is made on the host in float64:

* **output SQNR** ``20·log10(‖ref‖ / ‖out − ref‖)``, the gate (the formula of torch's numeric suite);
* **worst-channel SQNR** (last axis): one dominant channel can hide channels that were destroyed
  (a measured case: 39.3 dB overall while 63 of 64 channels were at 0 dB);
* **non-finite values** where float32 is finite (float16 overflow);
* reported, not gated: max abs error, relative L2, cosine (blind to scale errors: an output 127× too
  large has cosine 1.0), and element-wise relative error is not used at all (near-zero outputs
  dominate it).

A zero-signal reference (all zeros) is judged by max abs error against the variant's resolution.

On failure the model is run again, op by op, on the failing input (:mod:`pytest_jaxperf.core.program`) and
each layer (the operations of one module) is compared twice: along the variant's own run
(*propagated*: where error accumulates) and fed the float32 run's inputs (*shadow*: the layer that
loses precision); the first operation that turned finite values into inf or NaN is named.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.program import Const, execute, innermost_module, leaf_env

if TYPE_CHECKING:
    import contextlib
    from collections.abc import Sequence

    from ..core.program import Program
    from ..core.wrap import WrappedModel
    from .strategies import InputCase

#: Default output-SQNR floors (dB), from measured end-to-end SQNR minus a margin: float16 62–65 dB,
#: bfloat16 45–48, int8 weight-only 41, int8 dynamic 36 on small residual MLPs (``shared/notes``;
#: the suites' own figures are in the README).
DEFAULT_FLOORS_DB = {"float16": 45.0, "bfloat16": 30.0, "int8": 30.0, "int8-dynamic": 25.0}
#: The "a channel was destroyed" floor, low on purpose: per-channel SQNR of low-energy channels is noisy
#: (a correct int8 run measured 19.8 dB on its worst channel).
WORST_CHANNEL_FLOOR_DB = 10.0
#: Max abs error allowed where float32's output is exactly zero: about the variant's resolution.
ZERO_SIGNAL_TOLERANCE = {"float16": 2**-10, "bfloat16": 2**-7, "int8": 2 / 127, "int8-dynamic": 2 / 127}
#: Generated inputs per variant when neither the marker nor a chosen hypothesis profile says.
DEFAULT_EXAMPLES = 25
#: A channel's error is measured against at least this share of the mean channel energy: a channel whose
#: own signal is near zero (a logit near 0 on every row, a saturated sigmoid) would otherwise fail on
#: errors far below the output's scale. A destroyed channel of ordinary energy still reads about 0 dB, and
#: one with a tenth of the average energy at most 10 dB.
CHANNEL_SIGNAL_FLOOR = 0.1


def floor_for(dtype: str, min_sqnr_db: float | dict[str, float] | Any) -> float:
    """``dtype``'s SQNR floor: the marker's ``min_sqnr_db`` (a number or a per-dtype dict) or the default."""
    if isinstance(min_sqnr_db, int | float):
        return float(min_sqnr_db)
    if min_sqnr_db and dtype in min_sqnr_db:
        return float(min_sqnr_db[dtype])
    return DEFAULT_FLOORS_DB[dtype]


# --- metrics -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
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
            f"SQNR {_db(self.sqnr_db)}, worst channel {_db(self.worst_channel_db)}, max abs error "
            f"{self.max_abs:.3g}, relative L2 {self.rel_l2:.3g}, cosine {self.cosine:.6f}"
        )


def _db(value: float) -> str:
    return "inf dB (exact)" if math.isinf(value) and value > 0 else f"{value:.1f} dB"


def host_leaves(tree: Any) -> list[np.ndarray]:
    """Every array leaf of ``tree`` on the host, in float64."""
    import jax

    return [np.asarray(jax.device_get(leaf)).astype(np.float64) for leaf in jax.tree_util.tree_leaves(tree)]


def compare(reference: Any, output: Any) -> Comparison:
    """Compare two outputs (arrays or pytrees of the same structure)."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _compare(host_leaves(reference), host_leaves(output))


def _compare(refs: list[np.ndarray], outs: list[np.ndarray]) -> Comparison:
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
    return Comparison(
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


def judge(comparison: Comparison, dtype: str, floor_db: float, *, finite_only: bool = False) -> str | None:
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
        return f"output SQNR {_db(comparison.sqnr_db)} < {floor_db:.1f} dB"
    if comparison.worst_channel_db < WORST_CHANNEL_FLOOR_DB:
        return (
            f"output channel {comparison.worst_channel}: SQNR {_db(comparison.worst_channel_db)} < "
            f"{WORST_CHANNEL_FLOOR_DB:.1f} dB (output SQNR {_db(comparison.sqnr_db)})"
        )
    return None


# --- the hypothesis-driven check ------------------------------------------------------------------------


@dataclass(frozen=True)
class FidelityResult:
    """What the fidelity check measured for one variant."""

    dtype: str
    floor_db: float
    examples: int
    seconds: float
    min_sqnr_db: float
    min_worst_channel_db: float
    max_abs: float
    failure: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            key: (None if isinstance(value, float) and math.isinf(value) else value)
            for key, value in asdict(self).items()
        }


class _ExampleFailed(AssertionError):
    pass


def highest_precision() -> contextlib.AbstractContextManager[Any]:
    """float32 matmuls as float32 (not TF32 or bf16 passes): the reference's precision."""
    import jax

    manager: contextlib.AbstractContextManager[Any] = jax.default_matmul_precision("highest")
    return manager


def check_fidelity(
    reference: WrappedModel,
    variant: WrappedModel,
    example_inputs: tuple[Any, ...],
    *,
    dtype: str,
    floor_db: float,
    max_examples: int | None,
    database_key: str,
    input_scale: tuple[float, float] = (1e-3, 1e3),
    input_kinds: tuple[str, ...] | None = None,
) -> FidelityResult:
    """Compare ``variant`` with ``reference`` on hypothesis-generated inputs; the result says why it failed.

    Both are compiled on the example inputs before any example is drawn, and every generated input has
    their shapes and dtypes, so nothing compiles inside ``@given``.
    """
    from hypothesis import HealthCheck, given, reject, settings, target
    from hypothesis.control import currently_in_test_context

    from ..specs import INPUT_KINDS
    from .strategies import FLOAT16_MAX, FLOAT16_RANGE, build_inputs, input_cases

    started = time.perf_counter()
    placed = reference.place(*example_inputs)
    with highest_precision():
        reference.run(*placed)
    variant.run(*variant.place(*example_inputs))
    gain = _float16_gain(reference, example_inputs) if dtype == "float16" else 1.0

    seen: list[Comparison] = []
    judged: list[Comparison] = []  # the examples the SQNR floors apply to
    failures: list[tuple[int, InputCase, tuple[Any, ...], Comparison, str]] = []

    limit = FLOAT16_MAX if dtype == "float16" else None

    def property_(case: InputCase) -> None:
        inputs = build_inputs(case, example_inputs, gain, limit)
        with highest_precision():
            expected = reference(*inputs)
        actual = variant(*inputs)
        if not all(np.all(np.isfinite(leaf)) for leaf in host_leaves(expected)):
            reject()  # outside float32's own domain: nothing to compare against
        comparison = compare(expected, actual)
        seen.append(comparison)
        if case.kind != FLOAT16_RANGE:
            judged.append(comparison)
        if currently_in_test_context() and math.isfinite(comparison.sqnr_db):
            target(-comparison.sqnr_db, label="negated output SQNR")
        problem = judge(comparison, dtype, floor_db, finite_only=case.kind == FLOAT16_RANGE)
        if problem:
            failures.append((len(seen), case, inputs, comparison, problem))
            raise _ExampleFailed(problem)

    property_.__name__ = property_.__qualname__ = "jaxperf_fidelity"
    # One hypothesis database entry per test and variant: a failure found here replays first next time.
    property_._hypothesis_internal_add_digest = database_key.encode()  # type: ignore[attr-defined]
    # hypothesis loads its own "ci" profile (derandomized, no database) when it detects CI.
    chosen = _profile_name() not in ("default", "ci")
    config = settings(
        deadline=None,  # the first example must not be judged on time; nothing compiles in @given anyway
        max_examples=max_examples or (settings().max_examples if chosen else DEFAULT_EXAMPLES),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
        report_multiple_bugs=False,
    )
    test = settings(config)(
        given(case=input_cases(dtype, gain > 0, input_scale, input_kinds or INPUT_KINDS))(property_)
    )
    failure = None
    try:
        test()
    except _ExampleFailed as error:
        failure = _failure_message(reference, variant, failures, error)
    seconds = time.perf_counter() - started
    finite = [c for c in judged if not c.zero_signal]
    return FidelityResult(
        dtype=dtype,
        floor_db=floor_db,
        examples=len(seen),
        seconds=seconds,
        min_sqnr_db=min((c.sqnr_db for c in finite), default=math.inf),
        min_worst_channel_db=min((c.worst_channel_db for c in finite), default=math.inf),
        max_abs=max((c.max_abs for c in seen), default=0.0),
        failure=failure,
    )


def _profile_name() -> str:
    from hypothesis import settings

    getter = getattr(settings, "get_current_profile_name", None)
    return str(getter() if getter else getattr(settings, "_current_profile", "default") or "default")


def _float16_gain(reference: WrappedModel, example_inputs: tuple[Any, ...]) -> float:
    """The float32 model's largest intermediate per unit of input, on a unit-scale Gaussian input."""
    from .strategies import InputCase, build_inputs

    inputs = build_inputs(InputCase("gaussian", 0, 0.0), example_inputs)
    program = reference.program(*inputs)
    env = _run(program, reference.params, inputs)
    largest_input = max((float(np.max(np.abs(x))) for x in host_leaves(inputs) if x.size), default=1.0)
    largest = max(
        (float(np.max(np.abs(v))) for v in env.values() if _is_float_array(v) and np.size(v)), default=0.0
    )
    return largest / largest_input if largest_input > 0 else 1.0


def _failure_message(
    reference: WrappedModel,
    variant: WrappedModel,
    failures: Sequence[tuple[int, InputCase, tuple[Any, ...], Comparison, str]],
    error: BaseException,
) -> str:
    from .strategies import FLOAT16_RANGE

    first_index = failures[0][0]
    _, case, inputs, comparison, problem = failures[-1]  # hypothesis replays the shrunk example last
    import jax

    shape = next((tuple(np.shape(x)) for x in jax.tree_util.tree_leaves(inputs)), None)
    lines = [f"{problem} on input #{first_index} ({case.describe(shape)})"]
    try:
        lines.extend(diagnose(reference, variant, inputs))
    except Exception as failure:  # the diagnosis must never hide the failure it explains
        lines.append(f"(per-layer diagnosis unavailable: {type(failure).__name__}: {failure})")
    lines.append(f"output: {comparison.describe()}")
    if "SQNR" in problem and case.kind not in ("zero", FLOAT16_RANGE) and case.log10_scale > 1:
        lines.append(
            "if the model never sees inputs of this scale, narrow the generated ones: "
            "@jaxperf.dtype(..., input_scale=(smallest, largest))"
        )
    # Hypothesis's own account of the shrunk example ("Falsifying example:", "Failing test case:" from
    # 6.16x on); the database replays it first on the next run.
    lines.extend(
        n
        for n in getattr(error, "__notes__", [])
        if n.startswith(("Falsifying example", "Failing test case"))
    )
    return "\n".join(lines)


# --- per-layer diagnosis --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layer:
    name: str
    positions: list[int]
    output: int
    activations: list[int]
    """Values the layer reads that come from outside it and not from the parameters alone, in order."""


def _is_float_array(value: Any) -> bool:
    dtype = getattr(value, "dtype", None)
    return dtype is not None and (np.issubdtype(dtype, np.floating) or str(dtype) == "bfloat16")


def _run(
    program: Program,
    params: Any,
    inputs: Sequence[Any],
    first_nonfinite: list[int] | None = None,
) -> dict[int, Any]:
    """Every value of ``program`` on these inputs (op by op); notes the first op to create inf/NaN."""
    import jax

    def watch(position: int, equation: Any, values: list[Any], results: list[Any]) -> None:
        if first_nonfinite is not None and not first_nonfinite and _creates_nonfinite(values, results):
            first_nonfinite.append(position)

    env = leaf_env(program, jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(tuple(inputs)))
    return execute(program, env, observe=watch)


def _creates_nonfinite(values: list[Any], results: list[Any]) -> bool:
    def finite(value: Any) -> bool:
        return not _is_float_array(value) or bool(np.all(np.isfinite(np.asarray(value, np.float64))))

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
    import jax.numpy as jnp

    ref_program = reference.program(*inputs)
    var_program = variant.program(*inputs)
    with highest_precision():
        ref_env = _run(ref_program, reference.params, inputs)
    first_bad: list[int] = []
    var_env = _run(var_program, variant.params, inputs, first_bad)
    ref_layers, var_layers = _layers(ref_program), _layers(var_program)
    shadow: list[tuple[str, Comparison]] = []
    propagated: list[tuple[str, Comparison]] = []
    for name, layer in var_layers.items():
        ref_layer = ref_layers.get(name)
        if ref_layer is None:
            continue
        expected, actual = ref_env[ref_layer.output], var_env[layer.output]
        if np.shape(expected) != np.shape(actual) or not _is_float_array(expected):
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


def _worst(layers: list[tuple[str, Comparison]], count: int = 3) -> str:
    def key(item: tuple[str, Comparison]) -> tuple[int, float]:
        c = item[1]
        return (-c.nonfinite, min(c.sqnr_db, c.worst_channel_db + 30.0))

    ranked = sorted(layers, key=key)[:count]
    return "; ".join(
        f"{name}: "
        + (f"{c.nonfinite} non-finite values" if c.nonfinite else f"SQNR {_db(c.sqnr_db)}")
        + f", worst channel {_db(c.worst_channel_db)}"
        for name, c in ranked
    )
