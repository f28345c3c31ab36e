"""The rows every report of a run shares: one per check (timing, baseline, replay, verdict), one per
precision variant (fidelity, parameter bytes, audit), the verdicts counted and their reasons. The terminal,
the Markdown summary and the report page each render them their own way."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .records import CheckRecord, FidelityRecord
from .verdicts import IMPROVED, INCONCLUSIVE, NEW, NOT_COMPARABLE, PASS, REGRESSED, TEST_FAILED

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .records import Record


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.3f}"


def _vs_baseline(record: CheckRecord) -> str:
    """The change in time against the baseline (+ slower), with the limit it was judged against:
    ``+3.2% (lim 10%)``."""
    ratio = record.verdict.get("ratio") if record.verdict else None
    if ratio is None:
        return "-"
    limit = record.verdict.get("limit") if record.verdict else None
    return f"{ratio - 1:+.1%}" + (f" (lim {limit:.0%})" if limit is not None else "")


def _replay(record: CheckRecord) -> str:
    """The replay's change in time, with its interval's half-width: ``+1.2%±0.8``."""
    replay = record.replay
    if not replay or "ratio" not in replay:
        return "-"
    half_width = (replay["ci_high"] - replay["ci_low"]) / 2
    return f"{replay['ratio'] - 1:+.1%}±{100 * half_width:.1f}"


def check_rows(records: Sequence[Record]) -> list[tuple[str, ...]]:
    """One row per check: the table Markdown and the report page show (the terminal a part of it)."""
    rows: list[tuple[str, ...]] = [
        (
            "test",
            "variant",
            "model",
            "compiles",
            "compile ms",
            "median ms",
            "±CI %",
            "items/s",
            "time vs baseline (+ slower)",
            "replay",
            "by",
            "verdict",
        )
    ]
    for c in records:
        if not isinstance(c, CheckRecord):
            continue
        timing = c.timing
        median = timing.get("median") if timing else None
        ci = (
            f"{100 * max(median - timing['ci_low'], timing['ci_high'] - median) / median:.1f}"
            if timing and median
            else "-"
        )
        throughput = f"{timing['items_per_call'] / median:.0f}" if timing and median else "-"
        rows.append(
            (
                c.nodeid,
                c.variant,
                c.model,
                "-" if c.compiles is None else str(c.compiles) if c.jit else "no jit",
                _ms(c.compile_seconds) if c.compiles is not None or c.compile_seconds else "-",
                _ms(median),
                ci,
                throughput,
                _vs_baseline(c),
                _replay(c),
                c.verdict.get("decided_by", "-") if c.verdict else "-",
                c.verdict.get("status", "-") if c.verdict else "-",
            )
        )
    return rows


def precision_rows(records: Sequence[Record]) -> list[tuple[str, ...]]:
    """One row per check of a ``@jaxperf.dtype`` variant: fidelity, parameter bytes and the audit."""
    rows: list[tuple[str, ...]] = [
        ("test", "model", "min SQNR dB", "worst channel dB", "floor dB", "examples", "fidelity s",
         "param bytes", "× fp32", "matmuls")
    ]  # fmt: skip
    for c in records:
        if not isinstance(c, CheckRecord) or not c.precision:
            continue
        fidelity = c.precision.get("fidelity")

        def db(value: float | None, fidelity: FidelityRecord | None = fidelity) -> str:
            return "-" if not fidelity else ("inf" if value is None else f"{value:.1f}")

        rows.append(
            (
                c.nodeid,
                c.model,
                db(fidelity.get("min_sqnr_db") if fidelity else None),
                db(fidelity.get("min_worst_channel_db") if fidelity else None),
                db(fidelity.get("floor_db") if fidelity else None),
                str(fidelity.get("examples", "-")) if fidelity else "-",
                f"{fidelity['seconds']:.2f}" if fidelity else "-",
                str(c.precision["param_bytes"]),
                f"{c.precision['param_bytes'] / c.precision['float32_param_bytes']:.2f}"
                if c.precision.get("float32_param_bytes")
                else "-",
                c.precision["audit"]["summary"],
            )
        )
    return rows


#: The verdicts whose reasons the summary spells out under its table.
NOTED_VERDICTS = (REGRESSED, IMPROVED, INCONCLUSIVE, NOT_COMPARABLE)


def verdict_notes(records: Sequence[Record], statuses: Sequence[str] = NOTED_VERDICTS) -> list[str]:
    """One line per explanation of a verdict among ``statuses``: the test, the key, the verdict, the
    reason; checks sharing a verdict and its reason (37 baselines of another environment) share a line."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for c in records:
        if isinstance(c, CheckRecord) and c.verdict and c.verdict.get("status") in statuses:
            grouped.setdefault((c.verdict["status"], c.verdict["reason"]), []).append(f"{c.nodeid} {c.key}")
    lines = []
    for (status, reason), names in grouped.items():
        if len(names) == 1:
            lines.append(f"{names[0]}: {status}: {reason}")
            continue
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        lines.append(f"{len(names)} checks {status} ({shown}): {reason}")
    return lines


#: The order the verdict line counts in; the first always shown, the rest where any.
VERDICT_ORDER = (REGRESSED, IMPROVED, PASS, INCONCLUSIVE, NEW, NOT_COMPARABLE, TEST_FAILED)


def verdict_counts(records: Sequence[Record]) -> str:
    """One line: how many measurements got each verdict (``jaxperf: 0 regressed, 2 improved, 35 pass``)."""
    counts: dict[str, int] = {}
    for record in records:
        if isinstance(record, CheckRecord) and record.verdict:
            counts[record.verdict["status"]] = counts.get(record.verdict["status"], 0) + 1
    if not counts:
        return "jaxperf: nothing measured"
    order = [*VERDICT_ORDER, *sorted(set(counts) - set(VERDICT_ORDER))]
    shown = [status for status in order if counts.get(status) or status == REGRESSED]
    return "jaxperf: " + ", ".join(f"{counts.get(status, 0)} {status}" for status in shown)
