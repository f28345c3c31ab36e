"""``jaxperf report``: a run's results and the baselines' history as a page of sections (the data of
:mod:`pytest_jaxperf.page_model`), which :mod:`pytest_jaxperf.page_render` writes as one self-contained
HTML page or as Markdown.

The sections are built in :mod:`~pytest_jaxperf.page_sections` (the checks as measured),
:mod:`~pytest_jaxperf.page_explain` (why a check regressed, its profiler traces) and
:mod:`~pytest_jaxperf.page_history` (the baselines' history); here they are put in the page's order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import plots
from .page_explain import Traces, explanations_section, traces_section
from .page_history import history_section
from .page_model import Page
from .page_sections import (
    fidelity_section,
    figures_section,
    memory_section,
    speedup_section,
    throughput_section,
    verdicts_section,
)
from .rows import verdict_counts

if TYPE_CHECKING:
    from pathlib import Path

    from .results import History, Results


def build_page(results: Results, history: History | None, *, page_folder: Path | None = None) -> Page:
    """The report of one run: every section that has data, plus the baselines' history when given.

    ``page_folder`` is where the page will be written: links to trace folders are relative to it (absolute
    where not given).
    """
    problems: list[str] = []
    traces = Traces(results.path.parent, page_folder)
    if not plots.available():
        problems.append("matplotlib is not installed, so this report has tables and no plots: "
                        "pip install 'pytest-jaxperf[report]'")  # fmt: skip
    sections = [
        verdicts_section(results),
        explanations_section(results, traces),
        throughput_section(results, problems),
        speedup_section(results, problems),
        fidelity_section(results, problems),
        memory_section(results, problems),
        history_section(history, problems) if history is not None else None,
        figures_section(results),
        traces_section(results, traces),
    ]
    summary = (
        f"results: {results.path}",
        f"environment: {results.environment or 'not recorded'}",
        f"{len(results.checks)} check(s), {len(results.measured)} timed; " + verdict_counts(results.records),
    )
    return Page("jaxperf report", summary, tuple(s for s in sections if s is not None), tuple(problems))
