"""Numerical fidelity: a low-precision variant against the same model in float32, on generated inputs.

The reference runs in float32 with ``jax.default_matmul_precision("highest")`` (plain float32 matmuls
on GPUs use TF32, as noisy as float16); each generated input's outputs are compared by
:mod:`.outputs` (output SQNR, worst channel, non-finite values), and a failing input is explained
layer by layer by :mod:`.diagnosis`.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jax
import numpy as np
from hypothesis import HealthCheck, given, reject, settings, target
from hypothesis.control import currently_in_test_context

from ..core.memory import host_array
from ..records import FidelityRecord
from ..specs import INPUT_KINDS
from .diagnosis import diagnose, is_float_array, run_op_by_op
from .outputs import OutputComparison, compare, highest_precision, host_leaves, output_problem
from .strategies import FLOAT16_MAX, FLOAT16_RANGE, InputCase, build_inputs, input_cases

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..core.wrap import WrappedModel

#: Default output-SQNR floors (dB), from measured end-to-end SQNR minus a margin: float16 62–65 dB,
#: bfloat16 45–48, int8 weight-only 41, int8 dynamic 36 on small residual MLPs (``shared/notes``;
#: the suites' own figures are in docs/suites.md).
DEFAULT_FLOORS_DB = {"float16": 45.0, "bfloat16": 30.0, "int8": 30.0, "int8-dynamic": 25.0}
#: Generated inputs per variant when neither the marker nor a chosen hypothesis profile says.
DEFAULT_EXAMPLES = 25


def floor_for(dtype: str, min_sqnr_db: float | dict[str, float] | Any) -> float:
    """``dtype``'s SQNR floor: the marker's ``min_sqnr_db`` (a number or a per-dtype dict) or the default."""
    if isinstance(min_sqnr_db, int | float):
        return float(min_sqnr_db)
    if min_sqnr_db and dtype in min_sqnr_db:
        return float(min_sqnr_db[dtype])
    return DEFAULT_FLOORS_DB[dtype]


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
    distinct_inputs: int = 0
    """How many of the generated inputs differ from each other."""

    def to_dict(self) -> FidelityRecord:
        def finite(value: float) -> float | None:
            return None if math.isinf(value) else value

        return FidelityRecord(
            dtype=self.dtype,
            floor_db=self.floor_db,
            examples=self.examples,
            seconds=self.seconds,
            min_sqnr_db=finite(self.min_sqnr_db),
            min_worst_channel_db=finite(self.min_worst_channel_db),
            max_abs=self.max_abs,
            failure=self.failure,
            distinct_inputs=self.distinct_inputs,
        )


#: Shrinking a failure runs both models on every candidate: it stops after this many seconds, or after
#: as long as the search took to find the failure, whichever is longer.
SHRINK_SECONDS = 5.0


class _ExampleFailed(AssertionError):
    pass


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
    int_range: tuple[int, int] | None = None,
) -> FidelityResult:
    """Compare ``variant`` with ``reference`` on hypothesis-generated inputs; the result says why it failed.

    Both are compiled on the example inputs before any example is drawn, and every generated input has
    their shapes and dtypes, so nothing compiles inside ``@given``.
    """
    started = time.perf_counter()
    placed = reference.place(*example_inputs)
    with highest_precision():
        reference.run(*placed)
    variant.run(*variant.place(*example_inputs))
    gain = _float16_gain(reference, example_inputs) if dtype == "float16" else 1.0

    seen: list[OutputComparison] = []
    digests: set[bytes] = set()
    judged: list[OutputComparison] = []  # the examples the SQNR floors apply to
    failures: list[tuple[int, InputCase, tuple[Any, ...], OutputComparison, str]] = []

    limit = FLOAT16_MAX if dtype == "float16" else None
    drawing = time.perf_counter()
    found: dict[InputCase, tuple[int, InputCase, tuple[Any, ...], OutputComparison, str]] = {}
    shrinking: list[float] = []  # when the first failure was found, and the budget of the shrinking

    def property_(case: InputCase) -> None:
        if shrinking and time.perf_counter() - shrinking[0] > shrinking[1]:
            # Out of shrinking time: no more model runs; the failures found so far still fail, so that
            # hypothesis ends on the simplest of them.
            if case not in found:
                reject()
            failures.append(found[case])
            raise _ExampleFailed(found[case][4])
        inputs = build_inputs(case, example_inputs, gain, limit, int_range)
        digests.add(_digest(inputs))
        with highest_precision():
            expected = reference.on_inputs(*inputs)
        actual = variant.on_inputs(*inputs)
        if not all(np.all(np.isfinite(leaf)) for leaf in host_leaves(expected)):
            reject()  # outside float32's own domain: nothing to compare against
        comparison = compare(expected, actual)
        seen.append(comparison)
        if case.kind != FLOAT16_RANGE:
            judged.append(comparison)
        if currently_in_test_context() and math.isfinite(comparison.sqnr_db):
            target(-comparison.sqnr_db, label="negated output SQNR")
        problem = output_problem(comparison, dtype, floor_db, finite_only=case.kind == FLOAT16_RANGE)
        if problem:
            failures.append((len(seen), case, inputs, comparison, problem))
            found[case] = failures[-1]
            if not shrinking:
                now = time.perf_counter()
                shrinking.extend((now, max(SHRINK_SECONDS, now - drawing)))
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
        shrunk = time.perf_counter()
        failure = _failure_message(reference, variant, failures, error)
        failure += (
            f"\ncost: found after {shrinking[0] - drawing:.1f} s of generated inputs; shrinking "
            f"{shrunk - shrinking[0]:.1f} s (budget {shrinking[1]:.1f} s); per-layer diagnosis "
            f"{time.perf_counter() - shrunk:.1f} s"
        )
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
        distinct_inputs=len(digests),
    )


def _digest(inputs: tuple[Any, ...]) -> bytes:
    digest = hashlib.blake2b(digest_size=16)
    for leaf in jax.tree_util.tree_leaves(inputs):
        digest.update(np.ascontiguousarray(host_array(leaf)).tobytes())
    return digest.digest()


def _profile_name() -> str:
    getter = getattr(settings, "get_current_profile_name", None)
    return str(getter() if getter else getattr(settings, "_current_profile", "default") or "default")


def _float16_gain(reference: WrappedModel, example_inputs: tuple[Any, ...]) -> float:
    """The float32 model's largest intermediate per unit of input, on a unit-scale Gaussian input."""
    inputs = build_inputs(InputCase("gaussian", 0, 0.0), example_inputs)
    program = reference.program(*inputs)
    env = run_op_by_op(program, reference.params, inputs)
    largest_input = max((float(np.max(np.abs(x))) for x in host_leaves(inputs) if x.size), default=1.0)
    largest = max(
        (float(np.max(np.abs(v))) for v in env.values() if is_float_array(v) and np.size(v)), default=0.0
    )
    return largest / largest_input if largest_input > 0 else 1.0


def _failure_message(
    reference: WrappedModel,
    variant: WrappedModel,
    failures: Sequence[tuple[int, InputCase, tuple[Any, ...], OutputComparison, str]],
    error: BaseException,
) -> str:
    first_index = failures[0][0]
    _, case, inputs, comparison, problem = failures[-1]  # hypothesis replays the shrunk example last
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
