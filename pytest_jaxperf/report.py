"""Results → terminal lines and the Markdown summary. Pure functions of the records."""

from __future__ import annotations

import re
import textwrap
from typing import TYPE_CHECKING

from .gate_notes import gate_lines, paired_drift_lines
from .noise import DRIFT_MIN_CHECKS, TimedCheck, run_drift
from .records import CheckRecord, ComparisonRecord, FigureRecord
from .rows import check_rows, precision_rows, verdict_notes
from .verdicts import DECIDED_BY_CROSS_PROCESS, REGRESSED

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .records import ExplanationRecord, OpTimeRecord, Record


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


def drift_lines(records: Sequence[Record]) -> list[str]:
    """When the run's timed checks moved together against their baselines: what that says, and which
    regressions stand out even against it (see :class:`~pytest_jaxperf.noise.RunDrift`)."""
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
