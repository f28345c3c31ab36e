"""``jaxperf ab``: the base revision against the working tree, in alternating fresh processes.

On a shared runner one test's median moves by 3–6 % from one fresh process to the next (15–25 % with naive
timing), as much as a regression worth catching, and a stored baseline cannot tell the two apart. Running
A (the base revision, checked out in a temporary git worktree) and B (the working tree, as it is) in
alternating processes, A B, B A, A B …, exposes both to the same drift; the processes are the replicates,
and their spread is the noise that matters. Each test runs with its own measurement (``--jaxperf``),
against no baseline.

The modules: ``stats`` (B/A and its verdict, pure), ``report`` (what the processes reported, the rows, the
table), ``worktree`` (git: the repository, the revision, A's worktree), ``signals`` (Ctrl-C and SIGTERM),
``driver`` (the rounds), ``outcome_plugin`` (the pytest plugin each process loads, self-contained).
"""

from __future__ import annotations

from ..comparison import ONLY_IN_A, ONLY_IN_B
from ..verdicts import IMPROVED, INCONCLUSIVE, PASS, REGRESSED
from .driver import DEFAULT_ROUNDS, OUTCOMES_MODULE, install_outcomes_plugin, run_ab, run_side
from .errors import AbError
from .report import (
    FAILED_ON_A,
    FAILED_ON_B,
    FAILED_ON_BOTH,
    FAILING,
    NOT_MEASURED,
    AbReport,
    Row,
    SideRun,
    report_rows,
    summarize,
)
from .stats import CONFIDENCE, DEFAULT_THRESHOLD, RatioEstimate, ratio_of_medians, ratio_verdict
from .worktree import base_worktree, repository_root, resolve_revision, uncommitted_changes

__all__ = [
    "CONFIDENCE",
    "DEFAULT_ROUNDS",
    "DEFAULT_THRESHOLD",
    "FAILED_ON_A",
    "FAILED_ON_B",
    "FAILED_ON_BOTH",
    "FAILING",
    "IMPROVED",
    "INCONCLUSIVE",
    "NOT_MEASURED",
    "ONLY_IN_A",
    "ONLY_IN_B",
    "OUTCOMES_MODULE",
    "PASS",
    "REGRESSED",
    "AbError",
    "AbReport",
    "RatioEstimate",
    "Row",
    "SideRun",
    "base_worktree",
    "install_outcomes_plugin",
    "ratio_of_medians",
    "ratio_verdict",
    "report_rows",
    "repository_root",
    "resolve_revision",
    "run_ab",
    "run_side",
    "summarize",
    "uncommitted_changes",
]
