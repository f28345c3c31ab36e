"""The sections of ``jaxperf report``'s page that show a run's checks as measured: the checks and their
verdicts, throughput against batch size, the speed-up matrix, fidelity against float32, memory per
variant, and the figures the tests reported."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

from . import plots
from .gate_notes import gate_lines
from .page_labels import case_label, series_label, variant_label
from .page_model import Section, Table, draw_plot
from .records import ComparisonRecord, FigureRecord
from .rows import check_rows, precision_rows, verdict_notes
from .verdicts import INCONCLUSIVE, NOT_COMPARABLE, REGRESSED

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .records import CheckRecord
    from .results import Results

#: The variant a test case's speed-ups are read against (eager where the test measured eager).
REFERENCE_VARIANT = "fp32-d1"


def _throughput(record: CheckRecord) -> float:
    return float(record.timed["items_per_call"]) / float(record.timed["median"])


def verdicts_section(results: Results) -> Section:
    """Every check of the run in a table per test module, with the notes on its verdicts and on the
    gate itself."""
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


def throughput_section(results: Results, problems: list[str]) -> Section | None:
    """Items per second against batch size, per series timed at more than one batch size; None where
    there is none."""
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
        plots=draw_plot(
            lambda: plots.throughput_against_batch(points), "throughput against batch size", problems
        ),
        tables=(Table(("series", "batch", "items/s"), rows),),
        notes=notes,
    )


def speedup_section(results: Results, problems: list[str]) -> Section | None:
    """Each variant's throughput relative to its test case's fp32 on one device; None where no case
    has the reference and another variant."""
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
        plots=draw_plot(lambda: plots.speedup_matrix(cases, columns, values), "speed-up matrix", problems),
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


def fidelity_section(results: Results, problems: list[str]) -> Section | None:
    """Each precision variant's worst SQNR against its floor, and what its matmuls compute in; None
    where no check has a precision summary."""
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
        plots=draw_plot(lambda: plots.sqnr_against_floor(labels, sqnr, floors), "SQNR per variant", problems)
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


def memory_section(results: Results, problems: list[str]) -> Section | None:
    """What each compiled program needs on its device, per variant; None where no check has the
    figures."""
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
        plots=draw_plot(lambda: plots.memory_per_variant(labels, parts), "memory per variant", problems),
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


def figures_section(results: Results) -> Section | None:
    """The figures and A/B comparisons the tests reported; None where there are none."""
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
