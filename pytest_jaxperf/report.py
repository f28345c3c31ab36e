"""Results → terminal lines, Markdown, JSON and pytest-benchmark's JSON. Pure functions of the records."""

from __future__ import annotations

import datetime
import platform
import re
import statistics
import textwrap
from typing import TYPE_CHECKING, Any

from .gate_notes import gate_lines, paired_drift_lines
from .records import CheckRecord, ComparisonRecord, FidelityRecord, FigureRecord
from .verdicts import (
    DECIDED_BY_CROSS_PROCESS,
    DRIFT_MIN_CHECKS,
    IMPROVED,
    INCONCLUSIVE,
    NEW,
    NOT_COMPARABLE,
    PASS,
    REGRESSED,
    TEST_FAILED,
    TimedCheck,
    run_drift,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .records import ExplanationRecord, OpTimeRecord, Record

JSON_SCHEMA_VERSION = 1


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


#: The terminal's columns of :func:`check_rows`, within 120 characters (the rest are in the Markdown, the
#: JSON and the report page), some under a shorter header.
TERMINAL_CHECK_COLUMNS = (
    "test", "variant", "model", "compiles", "median ms", "time vs baseline (+ slower)", "replay", "verdict",
)  # fmt: skip
_TERMINAL_HEADERS = {"time vs baseline (+ slower)": "vs base (+ slower)", "verdict": "verdict (by)"}


#: The terminal's columns of :func:`precision_rows` (the worst channel, the fidelity check's seconds and the
#: parameter bytes are in the Markdown, the JSON and the page).
TERMINAL_PRECISION_COLUMNS = ("test", "model", "min SQNR dB", "floor dB", "examples", "× fp32", "matmuls")


def terminal_precision_rows(records: Sequence[Record]) -> list[tuple[str, ...]]:
    """:func:`precision_rows` with the terminal's columns."""
    return _columns(precision_rows(records), TERMINAL_PRECISION_COLUMNS)


def terminal_check_rows(records: Sequence[Record]) -> list[tuple[str, ...]]:
    """:func:`check_rows` with the terminal's columns; the verdict with the tier that gave it (replay,
    exact) where it is not the cross-process one, the default."""
    rows = check_rows(records)
    by = [row[rows[0].index("by")] for row in rows]
    header, *body = _columns(rows, TERMINAL_CHECK_COLUMNS)
    told = [
        (*row[:-1], row[-1] + (f" ({tier})" if tier not in ("-", DECIDED_BY_CROSS_PROCESS) else ""))
        for row, tier in zip(body, by[1:], strict=True)
    ]
    return [tuple(_TERMINAL_HEADERS.get(name, name) for name in header), *told]


def _columns(rows: Sequence[Sequence[str]], names: Sequence[str]) -> list[tuple[str, ...]]:
    """The columns ``names`` of a table whose first row is its header, in that order."""
    kept = [list(rows[0]).index(name) for name in names]
    return [tuple(row[i] for i in kept) for row in rows]


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


#: The terminal summary's width: wider detail is in the JSON and the Markdown.
TERMINAL_COLUMNS = 120
#: A test id is never shortened below this: its file's start and its case's end must still read.
_NARROWEST_TEST_ID = 24


def summary_lines(records: Sequence[Record], columns: int = TERMINAL_COLUMNS) -> list[str]:
    """The terminal summary, within ``columns``: checks with their verdicts, then comparisons, figures and
    explanations (the same explanation for many checks said once)."""
    lines: list[str] = []
    rows = terminal_check_rows(records)
    if len(rows) > 1:
        lines += text_table(rows, columns)
    precision = terminal_precision_rows(records)
    if len(precision) > 1:
        lines += [""] if lines else []
        lines += text_table(precision, columns)
    comparisons = [r for r in records if isinstance(r, ComparisonRecord)]
    if comparisons:
        lines += [""] if lines else []
        comparison_rows: list[tuple[str, ...]] = [("test", "B / A", "ratio (time)", "95% CI", "rounds")]
        for record in comparisons:
            c = record.comparison
            comparison_rows.append(
                (
                    record.nodeid,
                    f"{c['name_b']} / {c['name_a']}",
                    f"{c['ratio']:.3f}",
                    f"{c['ci_low']:.3f}…{c['ci_high']:.3f}",
                    str(c["rounds"]),
                )
            )
        lines += text_table(comparison_rows, columns)
    figures = [r for r in records if isinstance(r, FigureRecord)]
    if figures:
        lines += [""] if lines else []
        figure_rows: list[tuple[str, ...]] = [("test", "variant", "figure", "value", "unit")]
        figure_rows += [(f.nodeid, f.variant, f.name, f"{f.value:.6g}", f.unit) for f in figures]
        lines += text_table(figure_rows, columns)
    scaling = scaling_lines(records)
    if scaling:
        lines += [""] if lines else []
        lines += scaling
    notes = verdict_notes(records) + drift_lines(records) + gate_lines(records)
    if notes:
        lines += [""] if lines else []
        lines += [wrapped for note in notes for wrapped in wrap_line(note, columns)]
    explained = explanation_notes(records)
    if explained:
        lines += ["", "why the time changed:"] if lines else ["why the time changed:"]
        lines += [wrapped for note in explained for wrapped in wrap_line(note, columns)]
    lines += [wrapped for note in trace_lines(records) for wrapped in wrap_line(note, columns)]
    return lines or ["no jaxperf checks or figures were recorded"]


def explanation_lines(explanation: ExplanationRecord, *, changes: int = 1, ops: int = 1) -> list[str]:
    """The explanation in words: its headline, the next ``changes - 1`` program changes, the ``ops`` that
    added most time (each with its share), and why a part is missing. The failure message takes the
    defaults; the Markdown summary more."""
    lines = []
    if "headline" in explanation:
        lines.append(f"why: {explanation['headline']}")
    lines.extend(
        f"  also: {change['description']}" for change in explanation.get("program_changes", [])[1:changes]
    )
    if "no_program" in explanation:
        lines.append(f"  program: {explanation['no_program']}")
    for op in explanation.get("op_times", [])[:ops]:
        lines.append(f"time: {op_time_text(op)}")
    if "no_time_breakdown" in explanation:
        lines.append(f"time: no per-op breakdown: {explanation['no_time_breakdown']}")
    return lines


def op_time_text(op: OpTimeRecord) -> str:
    """``multiply_fusion (loop fusion (tanh) f32[64,256]): 0.41 → 0.58 ms, 71% of the time the ops added``."""
    before, after = op["baseline_seconds"] * 1e3, op["current_seconds"] * 1e3
    share = op["share"]
    if share is None:
        part = ""
    else:
        part = (
            f", {share:.0%} of the time the ops added"
            if share >= 0.005
            else ", <1% of the time the ops added"
        )
    named = op["op"] if op["op"] == op["description"] else f"{op['op']} ({op['description']})"
    return f"{named}: {before:.3g} → {after:.3g} ms{part}"


def explanation_notes(records: Sequence[Record]) -> list[str]:
    """Per explained check that regressed or whose program changed: its name, then why its time changed
    (the headline and the op that added most time), indented under it. (``--jaxperf-explain`` explains
    every check; an unchanged program that passed is said in the Markdown and the JSON only.)"""
    lines = []
    for record in records:
        if not isinstance(record, CheckRecord) or not record.explanation:
            continue
        regressed = record.verdict is not None and record.verdict.get("status") == REGRESSED
        changed = bool(record.explanation.get("program_changes")) or "no_program" in record.explanation
        if regressed or changed:
            lines.append(f"{record.nodeid} {record.key}:")
            lines += [f"    {line.strip()}" for line in explanation_lines(record.explanation)]
    return lines


#: Traces named one by one in the terminal at most; the JSON and the Markdown list them all.
TRACES_NAMED = 5
#: How to open a trace, said once under the list.
OPEN_TRACE = (
    "open a trace at ui.perfetto.dev (Open trace file: its plugins/profile/*/perfetto_trace.json.gz) "
    "or with XProf (xprof --logdir <its folder>)"
)


def trace_lines(records: Sequence[Record]) -> list[str]:
    """The profiler traces written this run (``--jaxperf-profile``), and how to open them."""
    traces = [r.trace for r in records if isinstance(r, CheckRecord) and r.trace]
    if not traces:
        return []
    shown = traces[:TRACES_NAMED]
    more = f" and {len(traces) - len(shown)} more" if len(traces) > len(shown) else ""
    return [f"jaxperf: {len(traces)} profiler trace(s): {', '.join(shown)}{more}; {OPEN_TRACE}"]


def wrap_line(line: str, columns: int = TERMINAL_COLUMNS) -> list[str]:
    """``line`` within ``columns``, continued lines indented."""
    return textwrap.wrap(line, columns, subsequent_indent="    ", break_on_hyphens=False) or [line]


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


def drift_lines(records: Sequence[Record]) -> list[str]:
    """When the run's timed checks moved together against their baselines: what that says, and which
    regressions stand out even against it (see :class:`~pytest_jaxperf.verdicts.RunDrift`)."""
    # Only timing verdicts carry a ratio, its interval and a limit (new, not comparable: none).
    timed = [
        TimedCheck(f"{c.nodeid} {c.key}", ratio, ci_low, limit)
        for c in records
        if isinstance(c, CheckRecord) and c.verdict
        for ratio, ci_low, limit in [
            (c.verdict.get("ratio"), c.verdict.get("ci_low"), c.verdict.get("limit"))
        ]
        if ratio is not None and ci_low is not None and limit is not None
    ]
    drift = run_drift(timed)
    if drift is None:
        return []
    lines = [f"jaxperf: {drift.describe()}.", *paired_drift_lines(records, drift.median_ratio)]
    # Below DRIFT_MIN_CHECKS the median is no machine's: nothing is said to stand out against it.
    if drift.slower and drift.checks >= DRIFT_MIN_CHECKS:
        standing = len(drift.standing_out)
        lines.append(
            f"jaxperf: of the {drift.slower} slower than their limits, against that median "
            + (
                f"{standing} still stand{'s' if standing == 1 else ''} out: " + ", ".join(drift.standing_out)
                if standing
                else "none stands out"
            )
            + "; `jaxperf ab` compares two revisions interleaved, which a drifting machine cannot fool."
        )
    # A regression in the exact figures (compiles, FLOPs, bytes, memory) is the program's, whatever the
    # machine did: named apart, so that it never reads as one of those the drift may explain.
    exact = [
        f"{c.nodeid} {c.key}"
        for c in records
        if isinstance(c, CheckRecord) and c.verdict and c.verdict.get("regressed_exactly")
    ]
    if exact:
        lines.append(
            f"jaxperf: {len(exact)} regressed in exact figures (compiles, FLOPs, bytes, memory), which no "
            "drift explains: " + ", ".join(exact)
        )
    return lines


def scaling_lines(records: Sequence[Record]) -> list[str]:
    """Throughput per device count of the same test and model, and its fraction of linear scaling."""
    groups: dict[tuple[str, str], dict[int, float]] = {}
    for record in records:
        if not isinstance(record, CheckRecord) or not record.timing:
            continue
        devices = int(record.variant.rsplit("-d", 1)[1])
        base = re.sub(r"(?<=[\[-])d\d+(?=[\]-])", "d*", record.nodeid)
        groups.setdefault((base, record.model), {})[devices] = record.timing["throughput"]
    lines = []
    for (base, model), by_count in sorted(groups.items()):
        if len(by_count) < 2:
            continue
        one = by_count.get(1)
        parts = []
        for count, throughput in sorted(by_count.items()):
            efficiency = f" ({throughput / (count * one):.2f} of linear)" if one and count > 1 else ""
            parts.append(f"d{count} {throughput:.0f} items/s{efficiency}")
        lines.append(f"scaling {base} {model}: " + "; ".join(parts))
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


def text_table(rows: Sequence[Sequence[str]], columns: int | None = None) -> list[str]:
    """``rows`` (the first the header) as aligned text; within ``columns`` where given: the first column
    (the test id) shortened in its middle, then the last (free text: an audit's summary) at its end,
    each to no less than a readable width."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    excess = sum(widths) + 2 * (len(widths) - 1) - columns if columns else 0
    if excess > 0:
        first = max(widths[0] - excess, _NARROWEST_TEST_ID)
        rows = [(_elided(row[0], first), *row[1:]) for row in rows]
        excess -= widths[0] - max(len(row[0]) for row in rows)
        widths[0] = max(len(row[0]) for row in rows)
    if excess > 0 and len(widths) > 2 and not all(_is_number(row[-1]) for row in rows[1:]):
        last = max(widths[-1] - excess, _NARROWEST_TEST_ID)
        rows = [(*row[:-1], row[-1] if len(row[-1]) <= last else row[-1][: last - 1] + "…") for row in rows]
        widths[-1] = max(len(row[-1]) for row in rows)
    # Text columns flush left, number columns flush right.
    numeric = [all(_is_number(row[i]) for row in rows[1:]) for i in range(len(widths))]
    out = []
    for index, row in enumerate(rows):
        cells = [
            cell.rjust(width) if numeric[i] and index else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
        if index == 0:
            out.append("  ".join("-" * w for w in widths))
    return out


def _elided(text: str, width: int) -> str:
    """``text`` shortened to ``width`` by an ellipsis in its middle (a test id keeps its file and case)."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head) :]


def _is_number(text: str) -> bool:
    try:
        float(text.rstrip("%"))
    except ValueError:
        return text == "-"
    return True


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A GitHub-flavoured Markdown table, ``|`` in cells escaped."""

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    return [line(header), "|" + "---|" * len(header), *(line(row) for row in rows)]


def markdown_summary(records: Sequence[Record]) -> str:
    """The check table as GitHub-flavoured Markdown, for a pull-request comment or a step summary."""
    rows = check_rows(records)
    if len(rows) == 1:
        return "### jaxperf\n\nNo measurement was recorded.\n"
    lines = ["### jaxperf", "", *markdown_table(rows[0], rows[1:])]
    precision = precision_rows(records)
    if len(precision) > 1:
        lines += ["", "**Precision variants**", "", *markdown_table(precision[0], precision[1:])]
    regressions = [
        r
        for r in records
        if isinstance(r, CheckRecord) and r.verdict and r.verdict.get("status") == REGRESSED
    ]
    if regressions:
        lines += ["", "**Regressions**", ""]
        lines += [f"- `{r.nodeid}` {r.key}: {r.verdict['reason']}" for r in regressions if r.verdict]
    explained = [r for r in records if isinstance(r, CheckRecord) and r.explanation]
    if explained:
        lines += ["", "**Why the time changed**", ""]
        for r in explained:
            assert r.explanation is not None
            why = explanation_lines(r.explanation, changes=MARKDOWN_CHANGES, ops=MARKDOWN_OPS)
            lines += [f"- `{r.nodeid}` {r.key}", *(f"  - {_code_spans(line.strip())}" for line in why)]
    traces = [r for r in records if isinstance(r, CheckRecord) and r.trace]
    if traces:
        lines += ["", f"**Profiler traces** ({OPEN_TRACE})", ""]
        lines += [f"- `{r.nodeid}` {r.key}: `{r.trace}`" for r in traces]
    notes = drift_lines(records) + gate_lines(records)
    if notes:
        lines += ["", *(f"> {line.removeprefix('jaxperf: ')}" for line in notes)]
    return "\n".join(lines) + "\n"


#: The program changes and ops the Markdown summary lists per explained check (the failure message: one).
MARKDOWN_CHANGES, MARKDOWN_OPS = 5, 3


def _code_spans(line: str) -> str:
    """An explanation line with its HLO types as code (``f32[64,256]``: Markdown would read ``[…]`` as a
    link's text)."""
    return re.sub(r"\b([a-z]+\d+\[[\d,]*\])", r"`\1`", line)


def results_json(records: Sequence[Record], environment: str) -> dict[str, Any]:
    """Everything recorded, samples included, as one JSON-ready document."""
    return {
        "schema_version": JSON_SCHEMA_VERSION,
        "environment": environment,
        "records": [r.to_dict() for r in records],
    }


def benchmark_json(records: Sequence[Record], environment: str) -> dict[str, Any]:
    """The measured checks in pytest-benchmark's JSON format (its ``compare`` command reads it)."""
    benchmarks = []
    for record in records:
        if not isinstance(record, CheckRecord) or not record.timing:
            continue
        data = list(record.timing["samples"])
        ordered = sorted(data)
        q1, q3 = (
            (statistics.quantiles(ordered, n=4)[0], statistics.quantiles(ordered, n=4)[2])
            if len(ordered) > 1
            else (ordered[0], ordered[0])
        )
        mean = statistics.fmean(data)
        stddev = statistics.stdev(data) if len(data) > 1 else 0.0
        iqr = q3 - q1
        name = record.nodeid.split("::", 1)[-1]
        benchmarks.append(
            {
                "group": record.variant,
                "name": f"{name}::{record.key}",
                "fullname": f"{record.nodeid}::{record.key}",
                "params": None,
                "param": None,
                "extra_info": {
                    "jaxperf_mode": record.timing["mode"],
                    "items_per_call": record.timing["items_per_call"],
                    "verdict": record.verdict.get("status") if record.verdict else None,
                    "metrics": record.metrics,
                },
                "options": {"timer": "perf_counter", "blocked_on_output": True, "warmup": True},
                "stats": {
                    "min": ordered[0],
                    "max": ordered[-1],
                    "mean": mean,
                    "stddev": stddev,
                    "rounds": len(data),
                    "median": record.timing["median"],
                    "iqr": iqr,
                    "q1": q1,
                    "q3": q3,
                    "iqr_outliers": sum(1 for x in data if x < q1 - 1.5 * iqr or x > q3 + 1.5 * iqr),
                    "stddev_outliers": sum(1 for x in data if abs(x - mean) > stddev),
                    "outliers": "0;0",
                    "ld15iqr": min((x for x in ordered if x >= q1 - 1.5 * iqr), default=ordered[0]),
                    "hd15iqr": max((x for x in ordered if x <= q3 + 1.5 * iqr), default=ordered[-1]),
                    "ops": 1 / mean if mean else 0.0,
                    "total": sum(data),
                    "data": data,
                    "iterations": record.timing["calls_per_sample"],
                },
            }
        )
    return {
        "machine_info": {
            "node": platform.node(),
            "processor": platform.processor(),
            "machine": platform.machine(),
            "python_implementation": platform.python_implementation(),
            "python_version": platform.python_version(),
            "system": platform.system(),
            "release": platform.release(),
            "jaxperf_environment": environment,
        },
        "commit_info": {"id": "unknown", "dirty": False, "project": "", "branch": "(unknown)"},
        "benchmarks": benchmarks,
        "datetime": datetime.datetime.now(datetime.UTC).isoformat(),
        "version": "5.1.0",
    }
