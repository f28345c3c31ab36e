"""``jaxperf report``'s page (:mod:`pytest_jaxperf.page`) written out: one self-contained HTML page, or
GitHub-flavoured Markdown with the same tables for a pull-request comment."""

from __future__ import annotations

import base64
import html
import re
from typing import TYPE_CHECKING

from .page import Table
from .report import markdown_table

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .page import Page

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1400px; color: #1b1b1b;
       padding: 0 1em; }
h1 { font-size: 1.6em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
.summary li, .problems li { margin: .15em 0; }
.problems { background: #fff4e5; border-left: 4px solid #e69500; padding: .5em 1em; }
.pair { display: flex; flex-wrap: wrap; gap: 1.5em; align-items: flex-start; }
.pair img { max-width: 100%; height: auto; border: 1px solid #ddd; }
.tables { overflow-x: auto; flex: 1 1 600px; min-width: 0; }
caption { text-align: left; font-family: ui-monospace, monospace; padding: .3em 0; }
table { border-collapse: collapse; font-size: .85em; margin-bottom: 1em; }
th, td { border: 1px solid #ccc; padding: .25em .5em; text-align: left; white-space: nowrap; }
th { background: #f2f2f2; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafafa; }
.regressed { color: #b00020; font-weight: bold; }
.improved { color: #1b5e20; }
.inconclusive { color: #8a6d00; }
.notes li { font-family: ui-monospace, monospace; font-size: .85em; }
"""


def _cell(text: str, header: str) -> str:
    classes = []
    if re.fullmatch(r"[−+-]?[\d,]*\.?\d+(e[+-]?\d+)?[%×]?", text.strip()):
        classes.append("num")
    if header == "verdict" and text in ("regressed", "improved", "inconclusive"):
        classes.append(text)
    attribute = f' class="{" ".join(classes)}"' if classes else ""
    return f"<td{attribute}>{html.escape(text)}</td>"


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
    body = "".join(
        "<tr>"
        + "".join(_cell(cell, header) for cell, header in zip(row, table.header, strict=False))
        + "</tr>"
        for row in table.rows
    )
    caption = f"<caption>{html.escape(table.caption)}</caption>" if table.caption else ""
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


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
        parts.append(f"<section><h2>{html.escape(section.title)}</h2>")
        if section.intro:
            parts.append(f"<p>{html.escape(section.intro)}</p>")
        images = "".join(
            f'<img alt="{html.escape(p.description)}" src="data:image/png;base64,'
            f'{base64.b64encode(p.png).decode("ascii")}">'
            for p in section.plots
        )
        tables = "".join(_html_table(t) for t in section.tables)
        parts.append(f'<div class="pair"><div>{images}</div><div class="tables">{tables}</div></div>')
        if section.notes:
            parts.append(
                '<ul class="notes">' + "".join(f"<li>{html.escape(n)}</li>" for n in section.notes) + "</ul>"
            )
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _markdown_table(table: Table) -> list[str]:
    caption = [f"`{table.caption}`", ""] if table.caption else []
    return caption + markdown_table(table.header, table.rows)


def to_markdown(page: Page, *, max_rows: int = 60) -> str:
    """GitHub-flavoured Markdown with the same tables (no images), for a pull-request comment."""
    lines = [f"## {page.title}", ""] + [f"- {line}" for line in page.summary]
    if page.problems:
        lines += ["", "**Not shown**", ""] + [f"- {p}" for p in page.problems]
    for section in page.sections:
        lines += ["", f"### {section.title}", ""]
        if section.intro:
            lines += [section.intro, ""]
        for table in section.tables:
            shown = Table(table.header, table.rows[:max_rows])
            lines += [*_markdown_table(shown), ""]
            if len(table.rows) > max_rows:
                lines += [f"*… {len(table.rows) - max_rows} more rows in the HTML report*", ""]
        lines += [f"- {note}" for note in section.notes]
    return "\n".join(lines).rstrip() + "\n"


def all_tables(page: Page) -> Sequence[Table]:
    """Every table of the page, for checks that the HTML and the Markdown say the same."""
    return [t for s in page.sections for t in s.tables]
