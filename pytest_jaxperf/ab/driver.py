"""The rounds of ``jaxperf ab``: A and B in alternating fresh pytest processes, and what each reported."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..processes import run_pytest, scratch_directory
from ..results import ResultsError, load_results
from ..signals import terminate_as_interrupt
from . import outcome_plugin
from .errors import AbError
from .report import AbReport, SideRun, summarize
from .stats import DEFAULT_THRESHOLD
from .worktree import base_worktree, repository_root, resolve_revision, uncommitted_changes

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

DEFAULT_ROUNDS = 5

#: The pytest plugin each side's process loads to report its tests' outcomes, whatever the side's own
#: jaxperf version: the file of ``outcome_plugin`` copied into the scratch folder, put on PYTHONPATH, loaded
#: with ``-p``.
OUTCOMES_MODULE = "jaxperf_ab_outcomes"


def install_outcomes_plugin(scratch: Path) -> Path:
    """Copy the outcomes plugin into ``scratch`` as ``OUTCOMES_MODULE``, for ``run_side``; its path."""
    target = scratch / f"{OUTCOMES_MODULE}.py"
    shutil.copyfile(Path(outcome_plugin.__file__), target)
    return target


def run_side(
    side: str,
    round_index: int,
    directory: Path,
    pytest_args: Sequence[str],
    scratch: Path,
) -> SideRun:
    """One fresh pytest process at ``directory``: measured with --jaxperf, gated against no baseline.

    ``scratch`` holds the outcomes plugin (``install_outcomes_plugin``) and receives the process's files.

    Each process keeps its randomized memory layout (address-space and hash randomization): a fixed layout
    steadies one side's timings but turns the layout's effect, a few percent either way, into a bias
    between two directories that hold the same code; randomized, it is noise that the rounds average.
    """
    results = scratch / f"{side}{round_index:03d}.json"
    outcomes_file = scratch / f"{side}{round_index:03d}-outcomes.json"
    python_path = [str(directory), str(scratch), *filter(None, [os.environ.get("PYTHONPATH")])]
    # A CI step's summary file is the caller's to write: each child appending its own summary would put a
    # table per round into it.
    inherited = {name: value for name, value in os.environ.items() if name != "GITHUB_STEP_SUMMARY"}
    env = {
        **inherited,
        "PYTHONPATH": os.pathsep.join(python_path),
        outcome_plugin.OUTCOMES_ENV: str(outcomes_file),
    }
    args = [
        "--jaxperf", f"--jaxperf-json={results}", f"--jaxperf-baselines={scratch / 'no-baselines'}",
        "-p", OUTCOMES_MODULE, "-p", "no:cacheprovider", "-q", *pytest_args,
    ]  # fmt: skip
    start = time.perf_counter()
    done = run_pytest(args, cwd=directory, env=env)
    seconds = time.perf_counter() - start
    reported: dict[str, Any] = json.loads(outcomes_file.read_text()) if outcomes_file.exists() else {}
    try:
        measured = load_results(results).measured if results.exists() else {}
    except ResultsError as error:
        raise AbError(f"side {side}, round {round_index + 1}: its results cannot be used ({error})") from None
    return SideRun(
        side,
        round_index,
        seconds,
        int(reported.get("exitstatus", done.returncode)),
        {str(k): (str(v[0]), str(v[1])) for k, v in dict(reported.get("outcomes") or {}).items()},
        {key: float(record.timed["median"]) for key, record in measured.items()},
        (done.stdout + done.stderr)[-2000:],
    )


def run_ab(
    base: str,
    pytest_args: Sequence[str],
    *,
    rounds: int = DEFAULT_ROUNDS,
    threshold: float = DEFAULT_THRESHOLD,
    directory: Path | None = None,
    progress: Callable[[str], None] = lambda line: None,
) -> AbReport:
    """Run the selected tests at ``base`` (A) and in the working tree (B), ``rounds`` times each, ABBA."""
    if rounds < 2:
        raise AbError(f"--rounds {rounds}: at least 2 rounds are needed for an interval (5 recommended)")
    if not 0 < threshold < 1:
        raise AbError(f"--threshold {threshold}: give a fraction between 0 and 1, e.g. 0.05 for 5%")
    here = (directory or Path.cwd()).resolve()
    root = repository_root(here)
    commit = resolve_revision(root, base)
    report = AbReport(base, commit, uncommitted_changes(root), rounds, threshold)
    if report.dirty:
        changes = describe_changes(report.dirty, here.relative_to(root.resolve()))
        progress(
            f"jaxperf ab: the working tree has {len(report.dirty)} uncommitted change(s); B is the working "
            f"tree as it is, changes included: {changes}"
        )
    start = time.perf_counter()
    with terminate_as_interrupt(), base_worktree(root, commit) as worktree:
        side_directory = {"A": worktree / here.relative_to(root.resolve()), "B": here}
        with scratch_directory("ab") as scratch:
            install_outcomes_plugin(scratch)
            for index in range(rounds):
                # A B, then B A: a drift in the machine's speed that is linear in time cancels in each pair.
                for side in ("A", "B") if index % 2 == 0 else ("B", "A"):
                    run = run_side(side, index, side_directory[side], pytest_args, scratch)
                    report.runs.append(run)
                    where = f"base {commit[:12]}" if side == "A" else "working tree"
                    progress(
                        f"jaxperf ab: round {index + 1}/{rounds} {side} ({where}): pytest exit "
                        f"{run.exitstatus}, {len(run.medians)} measurement(s), {run.seconds:.1f} s"
                    )
                    if not run.outcomes and run.exitstatus not in (0, 1, 5):
                        # pytest itself failed (a usage error, the plugin missing at the base, an
                        # internal error): there is nothing to compare, and the rounds would repeat it.
                        raise AbError(
                            f"pytest at {side} ({where}) exited {run.exitstatus} without running tests:\n"
                            f"{run.output_tail.strip()}"
                        )
    report.seconds = time.perf_counter() - start
    report.rows = summarize(report.runs, threshold)
    if not report.rows:
        raise AbError(f"no test ran at either side with the pytest arguments {list(pytest_args)}")
    return report


def describe_changes(changes: list[str], tested: Path, shown: int = 8) -> str:
    """``git status --porcelain`` lines as a reader wants them: each path with what changed, and whether it
    lies outside the folder the tests run from (an untracked note there changes nothing B runs)."""
    kinds = {"??": "untracked", "M": "modified", "A": "added", "D": "deleted", "R": "renamed"}
    described = []
    for line in changes[:shown]:
        status, path = line[:2].strip(), line[3:].split(" -> ")[-1]
        kind = kinds.get(status, kinds.get(status[:1], status))
        outside = tested != Path() and not Path(path).is_relative_to(tested)
        described.append(f"{path} ({kind}" + (f", outside {tested.as_posix()}/)" if outside else ")"))
    more = f"; and {len(changes) - shown} more" if len(changes) > shown else ""
    return "; ".join(described) + more
