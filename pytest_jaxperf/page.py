"""``jaxperf report``: a run's results and the baselines' history as data (sections of tables and plots),
which :mod:`pytest_jaxperf.page_render` writes as one self-contained HTML page or as Markdown.

The page is data first: every plot has its numbers in a table beside it, so the Markdown (no images) says
the same as the HTML.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import plots
from .gate_notes import gate_lines
from .records import CheckRecord, ComparisonRecord, FigureRecord
from .report import check_rows, precision_rows, verdict_counts, verdict_notes
from .verdicts import INCONCLUSIVE, NOT_COMPARABLE, REGRESSED

if TYPE_CHECKING:
    from collections.abc import Callable

    from .results import History, Results

#: A variant's tokens in a test case id (``[bf16-d8-wide]``): what is left names the case itself.
_VARIANT_TOKEN = r"int8-dynamic|fp32|bf16|fp16|int8|d\d+"
REFERENCE_VARIANT = "fp32-d1"


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""


@dataclass(frozen=True)
class Plot:
    png: bytes
    description: str
    """The image's alternative text."""


@dataclass(frozen=True)
class Section:
    title: str
    intro: str = ""
    plots: tuple[Plot, ...] = ()
    tables: tuple[Table, ...] = ()
    notes: tuple[str, ...] = ()


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
    # One table per test module, the module as its caption: full test ids make the table too wide to read.
    rows = check_rows(results.records)
    tables = []
    for module in dict.fromkeys(row[0].split("::", 1)[0] for row in rows[1:]):
        own = tuple(
            (row[0].split("::", 1)[-1], *row[1:]) for row in rows[1:] if row[0].split("::", 1)[0] == module
        )
        tables.append(Table(rows[0], own, caption=module))
    notes = tuple(verdict_notes(results.records, (REGRESSED, INCONCLUSIVE, NOT_COMPARABLE)))
    notes += tuple(line.removeprefix("jaxperf: ") for line in gate_lines(results.records))
    return Section(
        "Checks and verdicts",
        "Every check of the run; under --jaxperf, its timing and its verdict against the committed baseline.",
        tables=tuple(tables),
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
    if not series:
        return None
    points = {label: sorted(by_batch.items()) for label, by_batch in series.items()}
    rows = tuple(
        (label, str(batch), f"{rate:,.0f}")
        for label, pairs in sorted(points.items())
        for batch, rate in pairs
    )
    return Section(
        "Throughput against batch size",
        "Items per second at the median call, per model and variant; batch sweeps drawn as lines.",
        plots=_draw(
            lambda: plots.throughput_against_batch(points), "throughput against batch size", problems
        ),
        tables=(Table(("series", "batch", "items/s"), rows),),
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
        tables=(Table(table[0], tuple(table[1:])),),
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


def _history_section(history: History, problems: list[str]) -> Section:
    problems.extend(history.problems)
    series = history.series()
    rows = []
    for (environment, module, key), points in sorted(series.items()):
        first, last = points[0], points[-1]
        change = f"{100 * (last.throughput / first.throughput - 1):+.1f}%" if len(points) > 1 else "-"
        rows.append(
            (environment, module, key, str(len(points)), f"{first.date} {first.commit[:8]}",
             f"{last.date} {last.commit[:8]}", f"{first.throughput:,.4g}", f"{last.throughput:,.4g}", change)
        )  # fmt: skip
    drawn: list[Plot] = []
    groups: dict[tuple[str, str], dict[str, list[tuple[str, float]]]] = {}
    for (environment, module, key), points in series.items():
        if len(points) > 1:
            recorded = [(f"{p.date} {p.commit[:8]}", p.throughput) for p in points]
            groups.setdefault((environment, module), {})[key] = recorded
    for (environment, module), by_key in sorted(groups.items()):
        title = f"{module} on {environment}"
        drawn += _draw(functools.partial(plots.history, title, by_key), f"history: {title}", problems)
    intro = (
        f"Every baseline recorded for each benchmark, read from {history.revisions} git revision(s) of the "
        "baselines folder and its files as they are now; a plot per module where a benchmark was recorded "
        "more than once."
    )
    header = ("environment", "module", "benchmark", "recordings", "first", "last", "first items/s",
              "last items/s", "change")  # fmt: skip
    return Section(
        "History of the baselines", intro, tuple(drawn), (Table(header, tuple(rows)),) if rows else ()
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


def build_page(results: Results, history: History | None) -> Page:
    """The report of one run: every section that has data, plus the baselines' history when given."""
    problems: list[str] = []
    if not plots.available():
        problems.append("matplotlib is not installed, so this report has tables and no plots: "
                        "pip install 'pytest-jaxperf[report]'")  # fmt: skip
    sections = [
        _verdicts(results),
        _throughput_section(results, problems),
        _speedup_section(results, problems),
        _fidelity_section(results, problems),
        _memory_section(results, problems),
        _history_section(history, problems) if history is not None else None,
        _figures_section(results),
    ]
    summary = (
        f"results: {results.path}",
        f"environment: {results.environment or 'not recorded'}",
        f"{len(results.checks)} check(s), {len(results.measured)} timed; " + verdict_counts(results.records),
    )
    return Page("jaxperf report", summary, tuple(s for s in sections if s is not None), tuple(problems))
