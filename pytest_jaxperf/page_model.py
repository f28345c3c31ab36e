"""``jaxperf report``'s page as data: sections of tables and plots, which :mod:`pytest_jaxperf.page` builds
and :mod:`pytest_jaxperf.page_render` writes as one self-contained HTML page or as Markdown.

The page is data first: every plot has its numbers in a table beside it, so the Markdown (no images) says
the same as the HTML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import plots

if TYPE_CHECKING:
    from collections.abc import Callable


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
    """A table of a section or an entry: its header, its rows, and how its columns wrap."""

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
    """A drawn plot: a view of the table beside it."""

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
    """One section of the page under its heading: an introduction, plots, tables, notes and entries."""

    title: str
    intro: str = ""
    plots: tuple[Plot, ...] = ()
    tables: tuple[Table, ...] = ()
    notes: tuple[str, ...] = ()
    entries: tuple[Entry, ...] = ()


@dataclass(frozen=True)
class Page:
    """The whole report: its title, a summary of the run, its sections, and what could not be shown."""

    title: str
    summary: tuple[str, ...]
    sections: tuple[Section, ...]
    problems: tuple[str, ...] = field(default=())
    """What could not be read or drawn: shown at the top, never hidden."""


def draw_plot(draw: Callable[[], bytes], description: str, problems: list[str]) -> tuple[Plot, ...]:
    """The plot ``draw`` makes, as a section's plots: none without matplotlib, and none where drawing
    fails, the failure added to ``problems``."""
    if not plots.available():
        return ()
    try:
        return (Plot(draw(), description),)
    except Exception as error:  # a plot is a view of the table beside it: the table still stands
        problems.append(f"plot '{description}' could not be drawn: {type(error).__name__}: {error}")
        return ()
