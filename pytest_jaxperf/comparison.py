"""``jaxperf compare A.json B.json``: every measurement of two runs side by side, with the gate's verdict.

B is judged against A exactly as a run is judged against its committed baseline (verdicts.verdict): the
deterministic tier (compiles, FLOPs, bytes, memory) and the timing tier (bootstrap interval of the ratio of
medians against the threshold). Two runs of one process each carry no noise floor, so the threshold alone
is the limit: on a shared machine, ``jaxperf ab`` is the precise tool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .verdicts import DEFAULT_THRESHOLD, REGRESSED, Verdict, verdict

if TYPE_CHECKING:
    from .records import CheckRecord
    from .results import Results

#: A measurement (or, in ``jaxperf ab``, a test) that exists on one side only; ``jaxperf ab`` says it the
#: same way.
ONLY_IN_A = "only in A"
ONLY_IN_B = "only in B"


@dataclass(frozen=True)
class Difference:
    """One measurement in A and/or B."""

    nodeid: str
    key: str
    a: CheckRecord | None
    b: CheckRecord | None
    verdict: Verdict

    @property
    def status(self) -> str:
        return self.verdict.status


def compare_results(a: Results, b: Results, *, threshold: float = DEFAULT_THRESHOLD) -> list[Difference]:
    """B against A, measurement by measurement (matched by test id and key), in A's order then B's."""
    measured_a, measured_b = a.measured, b.measured
    differences = []
    for identity in [*measured_a, *(k for k in measured_b if k not in measured_a)]:
        record_a, record_b = measured_a.get(identity), measured_b.get(identity)
        if record_a is None or record_b is None:
            side = ONLY_IN_B if record_a is None else ONLY_IN_A
            judged = Verdict(side, "the measurement exists in one run only")
        else:
            judged = verdict(
                record_b.gate_fields(),
                record_a.gate_fields(),
                record_b.timed["samples"],
                record_a.timed["samples"],
                threshold=threshold,
                reference="A",
            )
        differences.append(Difference(*identity, record_a, record_b, judged))
    return differences


def difference_rows(differences: list[Difference]) -> list[tuple[str, ...]]:
    """The terminal table: median time in A and B, B/A with its 95% interval, the verdict."""
    rows: list[tuple[str, ...]] = [("test", "measurement", "A ms", "B ms", "B/A time", "95% CI", "verdict")]
    for d in differences:

        def median_ms(record: CheckRecord | None) -> str:
            return "-" if record is None else f"{record.timed['median'] * 1e3:.4g}"

        v = d.verdict
        rows.append(
            (
                d.nodeid,
                d.key,
                median_ms(d.a),
                median_ms(d.b),
                "-" if v.ratio is None else f"{v.ratio:.3f}",
                "-" if v.ci_low is None or v.ci_high is None else f"{v.ci_low:.3f}…{v.ci_high:.3f}",
                d.status,
            )
        )
    return rows


def any_regressed(differences: list[Difference]) -> bool:
    return any(d.status == REGRESSED for d in differences)
