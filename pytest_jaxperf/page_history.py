"""The history section of ``jaxperf report``'s page: every baseline recorded for each benchmark, read from
the baselines folder's git revisions, as a table per module and a plot where a benchmark was recorded more
than once."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from . import plots
from .page_model import Plot, Section, Table, draw_plot
from .processes import UNKNOWN_COMMIT

if TYPE_CHECKING:
    from .results import History, HistoryPoint


def _recording(point: HistoryPoint) -> str:
    """``2026-11-01 2826e633``: a recording's date and commit, ``no commit`` where none was known."""
    known = point.commit and point.commit != UNKNOWN_COMMIT
    return f"{point.date} {point.commit[:8] if known else 'no commit'}"


def history_section(history: History, problems: list[str]) -> Section:
    """The baselines' history: a table per module and environment, a plot where a benchmark was recorded
    more than once; what could not be read is added to ``problems``."""
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
        drawn += draw_plot(functools.partial(plots.history, title, recorded), f"history: {title}", problems)
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
