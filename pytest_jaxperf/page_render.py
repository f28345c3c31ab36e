"""``jaxperf report``'s page (:mod:`pytest_jaxperf.page`) written out: one self-contained HTML page, or
GitHub-flavoured Markdown with the same tables for a pull-request comment."""

from __future__ import annotations

import base64
import html
import re
from typing import TYPE_CHECKING

from .page_model import Link, Table
from .report import markdown_table

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .page_model import Cell, Entry, Page, Section

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1400px; color: #1b1b1b;
       padding: 0 1em; }
h1 { font-size: 1.6em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
h3 { font-size: 1.05em; font-family: ui-monospace, monospace; margin: 1.5em 0 .3em; overflow-wrap: anywhere; }
.summary li, .problems li { margin: .15em 0; }
.problems { background: #fff4e5; border-left: 4px solid #e69500; padding: .5em 1em; }
.pair { display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start; }
.pair img { max-width: 100%; height: auto; border: 1px solid #ddd; }
.tables { overflow-x: auto; flex: 1 1 600px; min-width: 0; }
caption { text-align: left; font-family: ui-monospace, monospace; padding: .3em 0; }
table { border-collapse: collapse; font-size: .85em; margin-bottom: 1em; }
th, td { border: 1px solid #ccc; padding: .25em .5em; text-align: left; white-space: nowrap; }
td.text { white-space: normal; min-width: 18em; overflow-wrap: anywhere; }
td.id { white-space: normal; }
th { background: #f2f2f2; position: sticky; top: 0; white-space: normal; vertical-align: bottom; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafafa; }
.regressed { color: #b00020; font-weight: bold; }
.improved { color: #1b5e20; }
.inconclusive { color: #8a6d00; }
.notes li { font-family: ui-monospace, monospace; font-size: .85em; }
.entry { border-left: 3px solid #b00020; padding-left: 1em; }
.entry .headline { font-weight: bold; }
.links li { font-family: ui-monospace, monospace; font-size: .85em; overflow-wrap: anywhere; }
"""


def _link(link: Link) -> str:
    return f'<a href="{html.escape(link.href)}">{html.escape(link.text)}</a>'


def _cell(cell: Cell, header: str, table: Table) -> str:
    if isinstance(cell, Link):
        return f"<td>{_link(cell)}</td>"
    classes = []
    text = html.escape(cell)
    if re.fullmatch(r"[−+-]?[\d,]*\.?\d+(e[+-]?\d+)?([%×]| ?[KMGT]?i?B)?", cell.strip()):
        classes.append("num")
    if header == "verdict" and cell in ("regressed", "improved", "inconclusive"):
        classes.append(cell)
    if header in table.free_text:
        classes.append("text")
    if header in table.identifiers:
        # A test id has no space to break at: it may break after its brackets, dashes and slashes, and
        # does only where the table would otherwise be wider than the page.
        classes.append("id")
        text = re.sub(r"([\[/-])", r"\1<wbr>", text)
    attribute = f' class="{" ".join(classes)}"' if classes else ""
    return f"<td{attribute}>{text}</td>"


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
    body = "".join(
        "<tr>"
        + "".join(_cell(cell, header, table) for cell, header in zip(row, table.header, strict=False))
        + "</tr>"
        for row in table.rows
    )
    caption = f"<caption>{html.escape(table.caption)}</caption>" if table.caption else ""
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html_notes(notes: Sequence[str]) -> str:
    return '<ul class="notes">' + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>"


def _html_entry(entry: Entry) -> str:
    parts = [f'<article class="entry"><h3>{html.escape(entry.title)}</h3>']
    for index, line in enumerate(entry.lines):
        # The first line is the explanation's headline: what a reader looks for first.
        attribute = ' class="headline"' if index == 0 else ""
        parts.append(f"<p{attribute}>{html.escape(line)}</p>")
    if entry.links:
        parts.append('<ul class="links">' + "".join(f"<li>{_link(k)}</li>" for k in entry.links) + "</ul>")
    if entry.tables:
        parts.append('<div class="tables">' + "".join(_html_table(t) for t in entry.tables) + "</div>")
    if entry.notes:
        parts.append(_html_notes(entry.notes))
    parts.append("</article>")
    return "".join(parts)


def _html_section(section: Section) -> list[str]:
    parts = [f"<section><h2>{html.escape(section.title)}</h2>"]
    if section.intro:
        parts.append(f"<p>{html.escape(section.intro)}</p>")
    images = "".join(
        f'<img alt="{html.escape(p.description)}" src="data:image/png;base64,'
        f'{base64.b64encode(p.png).decode("ascii")}">'
        for p in section.plots
    )
    tables = "".join(_html_table(t) for t in section.tables)
    if images or tables:
        # No empty image column where there is no plot: the flex gap would push the tables aside.
        parts.append(
            '<div class="pair">'
            + (f"<div>{images}</div>" if images else "")
            + (f'<div class="tables">{tables}</div>' if tables else "")
            + "</div>"
        )
    parts += [_html_entry(entry) for entry in section.entries]
    if section.notes:
        parts.append(_html_notes(section.notes))
    parts.append("</section>")
    return parts


def to_html(page: Page) -> str:
    """One self-contained page: inline style, plots embedded as PNG data, no script, nothing fetched."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(page.title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(page.title)}</h1>",
        '<ul class="summary">' + "".join(f"<li>{html.escape(line)}</li>" for line in page.summary) + "</ul>",
    ]
    if page.problems:
        items = "".join(f"<li>{html.escape(p)}</li>" for p in page.problems)
        parts.append(f'<div class="problems"><strong>Not shown</strong><ul>{items}</ul></div>')
    for section in page.sections:
        parts += _html_section(section)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _markdown_link(link: Link) -> str:
    text = link.text.replace("[", r"\[").replace("]", r"\]")
    return f"[{text}]({link.href})"


def _markdown_table(table: Table) -> list[str]:
    caption = [f"`{table.caption}`", ""] if table.caption else []
    rows = [tuple(_markdown_link(c) if isinstance(c, Link) else c for c in row) for row in table.rows]
    return caption + markdown_table(table.header, rows)


def _markdown_tables(tables: Sequence[Table], max_rows: int) -> list[str]:
    lines: list[str] = []
    for table in tables:
        shown = Table(table.header, table.rows[:max_rows], table.caption)
        lines += [*_markdown_table(shown), ""]
        if len(table.rows) > max_rows:
            lines += [f"*… {len(table.rows) - max_rows} more rows in the HTML report*", ""]
    return lines


def _markdown_entry(entry: Entry, max_rows: int) -> list[str]:
    lines = [f"#### {entry.title}", ""]
    for index, line in enumerate(entry.lines):
        # A paragraph each: consecutive lines would run together into one.
        lines += [f"**{line}**" if index == 0 else line, ""]
    lines += [f"- {_markdown_link(link)}" for link in entry.links]
    lines += [""] if entry.links else []
    lines += _markdown_tables(entry.tables, max_rows)
    lines += [f"- {note}" for note in entry.notes]
    return [*lines, ""] if entry.notes else lines


def to_markdown(page: Page, *, max_rows: int = 60) -> str:
    """GitHub-flavoured Markdown with the same tables (no images), for a pull-request comment."""
    lines = [f"## {page.title}", ""] + [f"- {line}" for line in page.summary]
    if page.problems:
        lines += ["", "**Not shown**", ""] + [f"- {p}" for p in page.problems]
    for section in page.sections:
        lines += ["", f"### {section.title}", ""]
        if section.intro:
            lines += [section.intro, ""]
        lines += _markdown_tables(section.tables, max_rows)
        for entry in section.entries:
            lines += _markdown_entry(entry, max_rows)
        lines += [f"- {note}" for note in section.notes]
    return "\n".join(lines).rstrip() + "\n"


def all_tables(page: Page) -> Sequence[Table]:
    """Every table of the page, for checks that the HTML and the Markdown say the same."""
    return [t for s in page.sections for t in (*s.tables, *(t for e in s.entries for t in e.tables))]
