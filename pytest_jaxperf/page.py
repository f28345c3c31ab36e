"""``jaxperf report``: a run's results and the baselines' history as data (sections of tables and plots),
which :mod:`pytest_jaxperf.page_render` writes as one self-contained HTML page or as Markdown.

The page is data first: every plot has its numbers in a table beside it, so the Markdown (no images) says
the same as the HTML.
"""

from __future__ import annotations

import functools
import math
import os
import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import plots
from .gate_notes import gate_lines
from .processes import UNKNOWN_COMMIT
from .records import CheckRecord, ComparisonRecord, FigureRecord, counts_bytes
from .rows import check_rows, precision_rows, verdict_counts, verdict_notes
from .units import format_bytes
from .verdicts import DECIDED_BY_REPLAY, INCONCLUSIVE, NOT_COMPARABLE, REGRESSED

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .records import ExplanationRecord
    from .results import History, HistoryPoint, Results

#: A variant's tokens in a test case id (``[bf16-d8-wide]``): what is left names the case itself.
_VARIANT_TOKEN = r"int8-dynamic|fp32|bf16|fp16|int8|d\d+"
REFERENCE_VARIANT = "fp32-d1"


@dataclass(frozen=True)
class Link:
    """A link to a file or folder beside the page (a profiler trace): its text and its address, relative
    to the page where the page's folder is known."""

    text: str
    href: str


#: A table's cell: text, or a link.
Cell = str | Link


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    caption: str = ""
    free_text: tuple[str, ...] = ()
    """The columns of prose (an audit, a description), which may wrap; every other column keeps each cell
    on one line."""
    identifiers: tuple[str, ...] = ()
    """The columns of test ids and benchmark names, which may break after a ``[``, ``-`` or ``/`` where the
    table is too wide for the page."""


@dataclass(frozen=True)
class Plot:
    png: bytes
    description: str
    """The image's alternative text."""


@dataclass(frozen=True)
class Entry:
    """One subject of a section under its own heading (a regressed check): lines, links, tables, notes."""

    title: str
    lines: tuple[str, ...] = ()
    links: tuple[Link, ...] = ()
    tables: tuple[Table, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Section:
    title: str
    intro: str = ""
    plots: tuple[Plot, ...] = ()
    tables: tuple[Table, ...] = ()
    notes: tuple[str, ...] = ()
    entries: tuple[Entry, ...] = ()


@dataclass(frozen=True)
class Page:
    title: str
    summary: tuple[str, ...]
    sections: tuple[Section, ...]
    problems: tuple[str, ...] = field(default=())
    """What could not be read or drawn: shown at the top, never hidden."""


def _drop_parameters(label: str, token: str) -> str:
    """``label`` without the parameters of its ``[...]`` that match the regex ``token``, dashes tidied and
    an emptied ``[]`` dropped; repeated, since each removal can bring two dashes together."""
    pattern = re.compile(rf"(?<=[\[-])(?:{token})(?=[\]-])")
    while True:
        shorter = pattern.sub("", label).replace("[-", "[").replace("-]", "]").replace("--", "-")
        if shorter == label:
            return label.replace("[]", "")
        label = shorter


def case_label(record: CheckRecord) -> str:
    """``test_x[wide] Decoder``: the test case without its variant tokens, and the model."""
    return f"{_drop_parameters(record.nodeid.split('::')[-1], _VARIANT_TOKEN)} {record.model}"


def series_label(record: CheckRecord) -> str:
    """The case label without the batch size among its parameters: a model's points at several batch
    sizes (``test_x[1]``, ``test_x[64]``) make one line."""
    batch = str(record.timing.get("items_per_call") or "") if record.timing else ""
    return _drop_parameters(case_label(record), re.escape(batch)) if batch else case_label(record)


def variant_label(record: CheckRecord) -> str:
    return record.variant + ("" if record.jit else " eager")


def _throughput(record: CheckRecord) -> float:
    return float(record.timed["items_per_call"]) / float(record.timed["median"])


def _draw(draw: Callable[[], bytes], description: str, problems: list[str]) -> tuple[Plot, ...]:
    if not plots.available():
        return ()
    try:
        return (Plot(draw(), description),)
    except Exception as error:  # a plot is a view of the table beside it: the table still stands
        problems.append(f"plot '{description}' could not be drawn: {type(error).__name__}: {error}")
        return ()


def _verdicts(results: Results) -> Section:
    rows = check_rows(results.records)
    tables = _by_module(rows[0], rows[1:])
    notes = tuple(verdict_notes(results.records, (REGRESSED, INCONCLUSIVE, NOT_COMPARABLE)))
    notes += tuple(line.removeprefix("jaxperf: ") for line in gate_lines(results.records))
    return Section(
        "Checks and verdicts",
        "Every check of the run; under --jaxperf, its timing and its verdict against the committed baseline.",
        tables=tables,
        notes=notes,
    )


def _throughput_section(results: Results, problems: list[str]) -> Section | None:
    series: dict[str, dict[int, float]] = {}
    for check in results.measured.values():
        items = int(check.timed.get("items_per_call") or 1)
        series.setdefault(f"{series_label(check)} {variant_label(check)}", {})[items] = _throughput(check)
    for figure in results.records:
        if isinstance(figure, FigureRecord) and figure.batch is not None and figure.unit == "items/s":
            series.setdefault(f"{figure.model} {figure.variant} (sweep)", {})[figure.batch] = figure.value
    # A series at one batch size is a lone dot on an axis of batch sizes: it says nothing the checks'
    # items/s column (or the figures' table, for a sweep) does not already say.
    points = {label: sorted(by_batch.items()) for label, by_batch in series.items() if len(by_batch) > 1}
    if not points:
        return None
    rows = tuple(
        (label, str(batch), f"{rate:,.0f}")
        for label, pairs in sorted(points.items())
        for batch, rate in pairs
    )
    alone = len(series) - len(points)
    notes = (
        (f"{alone} series timed at one batch size only are not drawn: their items/s are in the checks' "
         "table (a sweep's in the figures').",)
        if alone
        else ()
    )  # fmt: skip
    return Section(
        "Throughput against batch size",
        "Items per second at the median call, per model and variant timed at more than one batch size; "
        "batch sweeps drawn as lines.",
        plots=_draw(
            lambda: plots.throughput_against_batch(points), "throughput against batch size", problems
        ),
        tables=(Table(("series", "batch", "items/s"), rows),),
        notes=notes,
    )


def _speedup_section(results: Results, problems: list[str]) -> Section | None:
    by_case: dict[str, dict[str, float]] = {}
    for check in results.measured.values():
        by_case.setdefault(case_label(check), {})[variant_label(check)] = _throughput(check)
    # Eager fp32 is the reference where a test has it: the JIT's own speed-up shows then.
    matrix: dict[str, tuple[str, dict[str, float]]] = {}
    for case, by_variant in by_case.items():
        reference = next(
            (v for v in (f"{REFERENCE_VARIANT} eager", REFERENCE_VARIANT) if v in by_variant), None
        )
        if reference is not None and len(by_variant) > 1:
            base = by_variant[reference]
            matrix[case] = (reference, {v: t / base for v, t in by_variant.items()})
    if not matrix:
        return None
    columns = sorted({v for _, ratios in matrix.values() for v in ratios}, key=_variant_order)
    cases = sorted(matrix)
    values = [[matrix[case][1].get(column) for column in columns] for case in cases]
    rows = tuple(
        (case, matrix[case][0], *("-" if v is None else f"{v:.2f}×" for v in row))
        for case, row in zip(cases, values, strict=True)
    )
    return Section(
        "Speed-up matrix",
        "Throughput of each optimization relative to the same test case in fp32 on one device (eager "
        "where the test measured eager). Above 1× is faster. On a CPU, bf16 and fp16 are emulated and "
        "slower: there their point is fidelity and memory, not speed.",
        plots=_draw(lambda: plots.speedup_matrix(cases, columns, values), "speed-up matrix", problems),
        tables=(Table(("test case and model", "reference", *columns), rows),),
    )


def _variant_order(label: str) -> tuple[int, int, str]:
    order = ("fp32", "bf16", "fp16", "int8", "int8-dynamic")
    match = re.fullmatch(r"(.+)-d(\d+)( eager)?", label)
    if match is None:
        return (0, len(order), label)
    dtype, devices, eager = match.groups()
    # Eager first: it is the reference the JIT's speed-up is read against.
    return (int(devices), -1 if eager else order.index(dtype) if dtype in order else len(order), label)


def _fidelity_section(results: Results, problems: list[str]) -> Section | None:
    table = precision_rows(results.records)
    if len(table) == 1:
        return None
    judged = [
        (c, fidelity)
        for c in results.checks
        if c.precision
        for fidelity in [c.precision.get("fidelity")]
        if fidelity and fidelity.get("floor_db") is not None
    ]
    labels = [f"{case_label(c)} {c.variant}" for c, _ in judged]
    sqnr = [_db(fidelity.get("min_sqnr_db")) for _, fidelity in judged]
    floors = [float(fidelity["floor_db"]) for _, fidelity in judged]
    return Section(
        "Fidelity against float32",
        "The worst signal-to-quantization-noise ratio over the hypothesis examples, per variant, against the "
        "floor the variant must stay above; the matmul audit says what each variant computes in.",
        plots=_draw(lambda: plots.sqnr_against_floor(labels, sqnr, floors), "SQNR per variant", problems)
        if judged
        else (),
        tables=_by_module(table[0], table[1:], free_text=("matmuls",)),
    )


def _by_module(
    header: tuple[str, ...], rows: Sequence[tuple[str, ...]], *, free_text: tuple[str, ...] = ()
) -> tuple[Table, ...]:
    """One table per test module, the module as its caption and the test ids without it: full test ids
    make a table too wide to read."""
    by_module: dict[str, list[tuple[str, ...]]] = {}
    for row in rows:
        module, _, test = row[0].partition("::")
        by_module.setdefault(module, []).append((test or module, *row[1:]))
    return tuple(
        Table(header, tuple(own), caption=module, free_text=free_text, identifiers=header[:1])
        for module, own in by_module.items()
    )


def _db(value: float | None) -> float:
    return math.inf if value is None else float(value)


def _memory_section(results: Results, problems: list[str]) -> Section | None:
    rows: list[tuple[str, ...]] = []
    labels: list[str] = []
    parts: dict[str, list[float]] = {"arguments": [], "outputs": [], "temporaries": []}
    for check in results.checks:
        # The memory budget's breakdown where there is one, else the measured program's metrics.
        compiled = check.memory.get("compiled") if check.memory else None
        metrics = check.metrics
        arguments = (
            compiled.get("arguments") if compiled else metrics.get("argument_bytes") if metrics else None
        )
        outputs = compiled.get("outputs") if compiled else metrics.get("output_bytes") if metrics else None
        temporaries = (
            compiled.get("temporaries") if compiled else metrics.get("temp_bytes") if metrics else None
        )
        if arguments is None or outputs is None or temporaries is None:
            continue
        label = f"{case_label(check)} {variant_label(check)}"
        labels.append(label)
        for name, size in (("arguments", arguments), ("outputs", outputs), ("temporaries", temporaries)):
            parts[name].append(float(size))
        budget = check.memory.get("budget_bytes") if check.memory else None
        params = check.precision.get("param_bytes") if check.precision else None
        rows.append(
            (
                label,
                _mib(arguments),
                _mib(outputs),
                _mib(temporaries),
                _mib(arguments + outputs + temporaries),
                "-" if params is None else _mib(params),
                "-" if budget is None else _mib(budget),
            )
        )
    if not rows:
        return None
    return Section(
        "Memory per variant",
        "What each compiled program needs on its device, from XLA's memory analysis (parameters are "
        "among the arguments); parameter bytes of precision variants and memory budgets where the test set "
        "one.",
        plots=_draw(lambda: plots.memory_per_variant(labels, parts), "memory per variant", problems),
        tables=(
            Table(
                (
                    "test case, model and variant",
                    "arguments MiB",
                    "outputs MiB",
                    "temporaries MiB",
                    "total MiB",
                    "parameters MiB",
                    "budget MiB",
                ),
                tuple(rows),
            ),
        ),
    )


def _mib(size: float) -> str:
    return f"{size / 2**20:.3f}"


def _recording(point: HistoryPoint) -> str:
    """``2026-11-01 2826e633``: a recording's date and commit, ``no commit`` where none was known."""
    known = point.commit and point.commit != UNKNOWN_COMMIT
    return f"{point.date} {point.commit[:8] if known else 'no commit'}"


def _history_section(history: History, problems: list[str]) -> Section:
    problems.extend(history.problems)
    groups: dict[tuple[str, str], dict[str, list[HistoryPoint]]] = {}
    for (environment, module, key), points in sorted(history.series().items()):
        groups.setdefault((environment, module), {})[key] = points
    tables: list[Table] = []
    drawn: list[Plot] = []
    for (environment, module), by_key in groups.items():
        title = f"{module} on {environment}"
        repeated = {key: points for key, points in by_key.items() if len(points) > 1}
        if not repeated:
            # One recording each: a first and a last column would say the same twice.
            once = tuple(
                (key, _recording(points[0]), _rate(points[0].throughput)) for key, points in by_key.items()
            )
            tables.append(
                Table(("benchmark", "recorded", "items/s"), once, caption=title, identifiers=("benchmark",))
            )
            continue
        rows = tuple(
            (key, str(len(points)), _recording(points[0]), _recording(points[-1]),
             _rate(points[0].throughput), _rate(points[-1].throughput),
             f"{100 * (points[-1].throughput / points[0].throughput - 1):+.1f}%" if len(points) > 1 else "-")
            for key, points in by_key.items()
        )  # fmt: skip
        header = ("benchmark", "recordings", "first", "last", "first items/s", "last items/s", "change")
        tables.append(Table(header, rows, caption=title, identifiers=("benchmark",)))
        recorded = {key: [(_recording(p), p.throughput) for p in points] for key, points in repeated.items()}
        drawn += _draw(functools.partial(plots.history, title, recorded), f"history: {title}", problems)
    return Section(
        "History of the baselines",
        _history_intro(history, groups),
        tuple(drawn),
        tuple(tables),
        _history_notes(history),
    )


def _rate(items_per_second: float) -> str:
    """``64,000``; ``12.5`` where a whole number would lose the figure."""
    return f"{items_per_second:,.0f}" if items_per_second >= 100 else f"{items_per_second:.3g}"


def _history_intro(history: History, groups: dict[tuple[str, str], dict[str, list[HistoryPoint]]]) -> str:
    """Where the history was read from, and why it is as short as it is where it is."""
    if history.revisions:
        revisions = f"{history.revisions} git revision{'s' if history.revisions > 1 else ''}"
        source = f"Every baseline recorded for each benchmark, read from {revisions} of the baselines folder "
        source += "and its files as they are now"
    else:
        source = (
            "The baselines as their files are now, and no earlier recording: no git revision of the "
            "baselines folder was found (it is outside a git checkout, git cannot run here, or its files "
            "were never committed)"
        )
    if not groups:
        return source + "; the folder holds no baseline."
    if any(len(points) > 1 for by_key in groups.values() for points in by_key.values()):
        return source + "; a plot per module where a benchmark was recorded more than once."
    return (
        source + "; each benchmark has one recording, so there is no change to draw yet (a plot appears once "
        "a benchmark is recorded again, at a later commit)."
    )


def _history_notes(history: History) -> tuple[str, ...]:
    unknown = sum(1 for p in history.points if not p.commit or p.commit == UNKNOWN_COMMIT)
    if not unknown:
        return ()
    return (
        f"{unknown} of {len(history.points)} recordings have no commit ('no commit'): they were recorded "
        "outside a git checkout, or where git could not run, so which commit they measured is not known.",
    )


def _figures_section(results: Results) -> Section | None:
    figures = [r for r in results.records if isinstance(r, FigureRecord)]
    comparisons = [r for r in results.records if isinstance(r, ComparisonRecord)]
    tables = []
    if figures:
        rows = tuple((f.nodeid, f.variant, f.name, f"{f.value:.6g}", f.unit) for f in figures)
        tables.append(Table(("test", "variant", "figure", "value", "unit"), rows))
    if comparisons:
        rows = tuple(
            (r.nodeid, f"{r.comparison['name_b']} / {r.comparison['name_a']}", f"{r.comparison['ratio']:.3f}",
             f"{r.comparison['ci_low']:.3f}…{r.comparison['ci_high']:.3f}", str(r.comparison["rounds"]))
            for r in comparisons
        )  # fmt: skip
        tables.append(Table(("test", "B / A", "ratio (time)", "95% CI", "rounds"), rows))
    if not tables:
        return None
    return Section(
        "Figures the tests reported",
        "jaxperf.record, batch sweeps and jaxperf.compare.",
        tables=tuple(tables),
    )


#: How many of a regression's program changes and ops the page lists (the results JSON has them all).
SHOWN_CHANGES = 5
#: How to open a check's trace, said once per section that links one.
OPEN_TRACE = (
    "Open a trace in Perfetto (ui.perfetto.dev → Open trace file → its .trace.json.gz file), or in XProf "
    "(xprof --logdir FOLDER, or TensorBoard's profile plugin: tensorboard --logdir FOLDER; FOLDER the trace "
    "folder)."
)


def _measurement(check: CheckRecord) -> str:
    return f"{check.nodeid} {check.key or check.model}"


def _explanations_section(results: Results, traces: _Traces) -> Section | None:
    explained = [c for c in results.checks if c.explanation]
    if not explained:
        return None
    unexplained = [
        c for c in results.checks if c.verdict and c.verdict["status"] == REGRESSED and not c.explanation
    ]
    notes = (
        (f"{len(unexplained)} regressed check(s) carry no explanation in these results: "
         + ", ".join(_measurement(c) for c in unexplained),)
        if unexplained
        else ()
    )  # fmt: skip
    return Section(
        "Why it regressed",
        "Per explained check: the largest differences between the baseline's optimized program and the "
        "current one, and the ops that added most time per call, from a profiler trace of each program. "
        + (OPEN_TRACE if any(c.trace for c in explained) else ""),
        notes=notes,
        entries=tuple(_explanation_entry(c, c.explanation, traces) for c in explained if c.explanation),
    )


def _explanation_entry(check: CheckRecord, explanation: ExplanationRecord, traces: _Traces) -> Entry:
    lines = [explanation["headline"]] if explanation.get("headline") else []
    by = check.verdict.get("decided_by") if check.verdict else None
    # The ratio of the tier that decided: the verdict's own is the cross-process one.
    replayed = check.replay.get("ratio") if check.replay and by == DECIDED_BY_REPLAY else None
    ratio = replayed if replayed is not None else (check.verdict.get("ratio") if check.verdict else None)
    if check.verdict and ratio is not None:
        lines.append(
            f"Time {ratio - 1:+.1%} against the baseline: {check.verdict['status']}"
            + (f" (decided by {by})" if by else "")
            + "."
        )
    tables: list[Table] = []
    notes: list[str] = []
    # In the explanation's order, which its headline follows: matmuls first, then by bytes touched.
    changes = list(explanation.get("program_changes", []))
    if changes:
        shown = changes[:SHOWN_CHANGES]
        change_rows = tuple(
            (c["description"], c["kind"], _amount(c["kind"], c["baseline"]), _amount(c["kind"], c["current"]),
             format_bytes(c["bytes"]))
            for c in shown
        )  # fmt: skip
        caption = (
            f"the first {len(shown)} of {len(changes)} program changes (matmuls first, then by bytes touched)"
            if len(changes) > len(shown)
            else "program changes"
        )
        header: tuple[str, ...] = ("change", "kind", "baseline", "current", "bytes touched")
        tables.append(Table(header, change_rows, caption=caption, free_text=("change",)))
    elif "program_changes" in explanation:
        notes.append("The two optimized programs do not differ in any op, fusion or size counted.")
    if explanation.get("no_program"):
        notes.append(f"Programs not compared: {explanation['no_program']}")
    timed = explanation.get("op_times", [])
    added = sorted(
        (o for o in timed if o["current_seconds"] > o["baseline_seconds"]),
        key=lambda o: o["baseline_seconds"] - o["current_seconds"],
    )[:SHOWN_CHANGES]
    if added:
        op_rows = tuple(
            (o["op"], o["description"], _microseconds(o["baseline_seconds"]),
             _microseconds(o["current_seconds"]), _microseconds(o["current_seconds"] - o["baseline_seconds"]),
             "-" if o["share"] is None else f"{o['share']:.0%}")
            for o in added
        )  # fmt: skip
        header = ("op", "what it computes", "baseline µs", "current µs", "added µs", "share of added")
        caption = "the ops that added most time per call"
        tables.append(Table(header, op_rows, caption=caption, free_text=("what it computes",)))
    elif timed:
        notes.append("No op of the current program takes longer than in the baseline's.")
    if explanation.get("no_time_breakdown"):
        notes.append(f"No per-op time: {explanation['no_time_breakdown']}")
    if "seconds" in explanation:
        notes.append(f"Explaining took {explanation['seconds']:.1f} s.")
    return Entry(_measurement(check), tuple(lines), traces.links(check), tuple(tables), tuple(notes))


def _amount(kind: str, value: int) -> str:
    return format_bytes(value) if counts_bytes(kind) else f"{value:,}"


def _microseconds(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f}"


@dataclass(frozen=True)
class _Traces:
    """Where checks' trace folders are, and links to them from the page's folder."""

    results_folder: Path
    page_folder: Path | None
    """Where the page is written; None where not known (written to standard output): links are then
    absolute, since a relative one would be relative to a folder the page may not be in."""

    def folder(self, trace: str) -> Path:
        """The trace folder as this process finds it: a relative one from the current folder (where
        ``jaxperf report`` runs, as pytest did), else beside the results file."""
        path = Path(trace)
        if path.is_absolute():
            return path
        here, beside = Path.cwd() / path, self.results_folder / path
        return beside if beside.exists() and not here.exists() else here

    def href(self, target: Path) -> str:
        if self.page_folder is None:
            return target.absolute().as_uri()
        try:
            relative = os.path.relpath(target.absolute(), self.page_folder.absolute())
        except ValueError:  # another drive (Windows): no relative path
            return target.absolute().as_uri()
        return urllib.parse.quote(Path(relative).as_posix())

    def files(self, trace: str) -> tuple[Path | None, Path | None]:
        """The Perfetto (``*.trace.json.gz``) and XProf (``*.xplane.pb``) files of a trace, where found."""
        folder = self.folder(trace)
        if folder.is_file():
            return (folder if folder.name.endswith("trace.json.gz") else None), (
                folder if folder.name.endswith(".xplane.pb") else None
            )
        if not folder.is_dir():
            return None, None
        # jax writes perfetto_trace.json.gz for Perfetto beside <host>.trace.json.gz; both open there.
        perfetto = sorted(folder.rglob("perfetto_trace.json.gz")) or sorted(folder.rglob("*.trace.json.gz"))
        xplane = sorted(folder.rglob("*.xplane.pb"))
        return (perfetto[-1] if perfetto else None), (xplane[-1] if xplane else None)

    def links(self, check: CheckRecord) -> tuple[Link, ...]:
        if not check.trace:
            return ()
        perfetto, xplane = self.files(check.trace)
        links = [Link(f"trace folder {check.trace}", self.href(self.folder(check.trace)))]
        links += [Link(f"Perfetto: {perfetto.name}", self.href(perfetto))] if perfetto else []
        links += [Link(f"XProf: {xplane.name}", self.href(xplane))] if xplane else []
        return tuple(links)


def _traces_section(results: Results, traces: _Traces) -> Section | None:
    traced = [c for c in results.checks if c.trace]
    if not traced:
        return None
    rows: list[tuple[Cell, ...]] = []
    missing = []
    for check in traced:
        if not check.trace:
            continue
        folder = traces.folder(check.trace)
        perfetto, xplane = traces.files(check.trace)
        if not folder.exists():
            missing.append(check.trace)
        rows.append(
            (
                _measurement(check),
                Link(check.trace, traces.href(folder)),
                Link(perfetto.name, traces.href(perfetto)) if perfetto else "-",
                Link(xplane.name, traces.href(xplane)) if xplane else "-",
            )
        )
    notes = (
        (f"{len(missing)} trace folder(s) not found from here (moved, or on another machine): linked as "
         "recorded: " + ", ".join(missing),)
        if missing
        else ()
    )  # fmt: skip
    return Section(
        "Profiler traces",
        "Each traced check's profiler trace. " + OPEN_TRACE,
        tables=(Table(("check", "trace folder", "Perfetto", "XProf"), tuple(rows), identifiers=("check",)),),
        notes=notes,
    )


def build_page(results: Results, history: History | None, *, page_folder: Path | None = None) -> Page:
    """The report of one run: every section that has data, plus the baselines' history when given.

    ``page_folder`` is where the page will be written: links to trace folders are relative to it (absolute
    where not given).
    """
    problems: list[str] = []
    traces = _Traces(results.path.parent, page_folder)
    if not plots.available():
        problems.append("matplotlib is not installed, so this report has tables and no plots: "
                        "pip install 'pytest-jaxperf[report]'")  # fmt: skip
    sections = [
        _verdicts(results),
        _explanations_section(results, traces),
        _throughput_section(results, problems),
        _speedup_section(results, problems),
        _fidelity_section(results, problems),
        _memory_section(results, problems),
        _history_section(history, problems) if history is not None else None,
        _figures_section(results),
        _traces_section(results, traces),
    ]
    summary = (
        f"results: {results.path}",
        f"environment: {results.environment or 'not recorded'}",
        f"{len(results.checks)} check(s), {len(results.measured)} timed; " + verdict_counts(results.records),
    )
    return Page("jaxperf report", summary, tuple(s for s in sections if s is not None), tuple(problems))
