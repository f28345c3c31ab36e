"""Results → terminal lines and JSON. Pure functions of the records."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .records import CheckRecord, FigureRecord, Record

if TYPE_CHECKING:
    from collections.abc import Sequence

JSON_SCHEMA_VERSION = 1


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f}"


def summary_lines(records: Sequence[Record]) -> list[str]:
    """The terminal summary: one table of checks, one of recorded figures."""
    checks = [r for r in records if isinstance(r, CheckRecord)]
    figures = [r for r in records if isinstance(r, FigureRecord)]
    import statistics

    lines: list[str] = []
    if checks:
        rows: list[tuple[str, ...]] = [
            ("test", "variant", "model", "compiles", "compile ms", "first call ms", "steady ms")
        ]
        for c in checks:
            steady = _ms(statistics.median(c.steady_call_seconds)) if c.steady_call_seconds else "-"
            rows.append(
                (
                    c.nodeid,
                    c.variant,
                    c.model,
                    str(c.compiles) if c.jit else "no jit",
                    _ms(c.compile_seconds),
                    _ms(c.first_call_seconds),
                    steady,
                )
            )
        lines += _table(rows)
    if figures:
        if lines:
            lines.append("")
        figure_rows: list[tuple[str, ...]] = [("test", "variant", "figure", "value", "unit")]
        figure_rows += [(f.nodeid, f.variant, f.name, f"{f.value:.6g}", f.unit) for f in figures]
        lines += _table(figure_rows)
    return lines or ["no jaxperf checks or figures were recorded"]


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
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


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return text == "-"
    return True


def results_json(records: Sequence[Record], environment: str) -> dict[str, Any]:
    """Everything recorded, as one JSON-ready document."""
    return {
        "schema_version": JSON_SCHEMA_VERSION,
        "environment": environment,
        "records": [r.to_dict() for r in records],
    }
