"""``jaxperf ab``: the base revision against the working tree, in alternating fresh processes.

On a shared runner one test's median moves by 3–6 % from one fresh process to the next (15–25 % with naive
timing), as much as a regression worth catching, and a stored baseline cannot tell the two apart. Running
A (the base revision, checked out in a temporary git worktree) and B (the working tree, as it is) in
alternating processes, A B, B A, A B …, exposes both to the same drift; the processes are the replicates,
and their spread is the noise that matters. Each test runs with its own measurement (``--jaxperf``),
against no baseline.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

DEFAULT_ROUNDS = 5
DEFAULT_THRESHOLD = 0.05
#: The interval printed; its lower end is the one-sided 95% bound that ``regressed`` needs.
CONFIDENCE = 0.90

PASS = "pass"
REGRESSED = "regressed"
IMPROVED = "improved"
INCONCLUSIVE = "inconclusive"
FAILED_ON_A = "failed on A"
FAILED_ON_B = "failed on B"
FAILED_ON_BOTH = "failed on both"
ONLY_ON_A = "only on A"
ONLY_ON_B = "only on B"
NOT_MEASURED = "not measured"
#: Verdicts that make ``jaxperf ab`` exit 1: the working tree is slower, or breaks a test that passes at base.
FAILING = (REGRESSED, FAILED_ON_B)

#: The pytest plugin each side's process loads to report its tests' outcomes, whatever the side's own
#: jaxperf version: a file written into the scratch folder, put on PYTHONPATH, loaded with ``-p``.
OUTCOMES_MODULE = "jaxperf_ab_outcomes"
OUTCOMES_ENV = "JAXPERF_AB_OUTCOMES"
OUTCOMES_PLUGIN = """
import json, os

_outcomes = {}


def pytest_collectreport(report):
    if report.failed:
        _outcomes[report.nodeid or "<collection>"] = ("error", _message(report))


def pytest_runtest_logreport(report):
    seen = _outcomes.get(report.nodeid)
    if report.failed:
        if seen is None or seen[0] != "failed":
            _outcomes[report.nodeid] = ("failed" if report.when == "call" else "error", _message(report))
    elif report.skipped and seen is None:
        _outcomes[report.nodeid] = ("skipped", _message(report))
    elif report.when == "call" and seen is None:
        _outcomes[report.nodeid] = ("passed", "")


def _message(report):
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return crash.message.splitlines()[0][:300] if crash.message else ""
    if isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:
        return str(report.longrepr[2])[:300]
    return str(report.longrepr or "").strip().splitlines()[-1][:300] if report.longrepr else ""


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("JAXPERF_AB_OUTCOMES")
    if path:
        with open(path, "w", encoding="utf-8") as stream:
            json.dump({"exitstatus": int(exitstatus), "outcomes": _outcomes}, stream)
"""


class AbError(Exception):
    """Misuse: not a git repository, a base revision that does not exist, bad arguments (exit 2)."""


# --- statistics: pure functions --------------------------------------------------------------------


@dataclass(frozen=True)
class RatioEstimate:
    """B's time relative to A's from rounds that ran back to back."""

    ratio: float
    """Geometric mean over rounds of median(B) / median(A): below 1, B is faster."""
    ci_low: float
    ci_high: float
    rounds: int


def ratio_of_medians(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> RatioEstimate:
    """B/A from the processes' medians: the ratio of their geometric means, and Welch's t interval on the
    log medians. The processes, not the samples, are the replicates: samples inside one process share its
    offset (memory layout, scheduling), which moves a median by 3–6 % from one process to the next.

    The interval is the two-sample one, not the paired one: measured on a 2-core runner, A's and B's offsets
    in one round are independent, so pairing buys nothing and would halve the degrees of freedom; the
    alternating order (A B, B A, …) still keeps a drift of the machine from favouring either side.
    """
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"ratio_of_medians needs at least 2 rounds per side, got {len(a)} and {len(b)}")
    log_a, log_b = [math.log(x) for x in a], [math.log(y) for y in b]
    difference = statistics.fmean(log_b) - statistics.fmean(log_a)
    var_a, var_b = statistics.variance(log_a) / len(a), statistics.variance(log_b) / len(b)
    spread = math.sqrt(var_a + var_b)
    if spread == 0:
        return RatioEstimate(
            math.exp(difference), math.exp(difference), math.exp(difference), min(len(a), len(b))
        )
    # Welch–Satterthwaite degrees of freedom.
    freedom = (var_a + var_b) ** 2 / (var_a**2 / (len(a) - 1) + var_b**2 / (len(b) - 1))
    t = float(stats.t.ppf(0.5 + confidence / 2, freedom))
    return RatioEstimate(
        math.exp(difference),
        math.exp(difference - t * spread),
        math.exp(difference + t * spread),
        min(len(a), len(b)),
    )


def judge(estimate: RatioEstimate, threshold: float = DEFAULT_THRESHOLD) -> str:
    """Regressed: the ratio beyond the threshold and the interval wholly above 1 (B slower with 95%
    confidence, one-sided). A change inside the threshold passes however sure it is; a large one whose
    interval still reaches 1 is inconclusive. The threshold is what keeps unchanged code from failing:
    on a 2-core runner the rounds' B/A moves by about 3.4% (sd), so 5 rounds put 5% at 3.3 standard errors."""
    if estimate.ratio - 1 > threshold:
        return REGRESSED if estimate.ci_low > 1 else INCONCLUSIVE
    if 1 / estimate.ratio - 1 > threshold:
        return IMPROVED if estimate.ci_high < 1 else INCONCLUSIVE
    return PASS


# --- what one process of one side reported ---------------------------------------------------------


@dataclass(frozen=True)
class SideRun:
    """One fresh pytest process at one side."""

    side: str
    round: int
    seconds: float
    exitstatus: int
    outcomes: dict[str, tuple[str, str]]
    """Test id → (passed / failed / error / skipped, first line of the failure)."""
    medians: dict[tuple[str, str], float]
    """(test id, measurement key) → median seconds per call."""
    output_tail: str = ""


@dataclass(frozen=True)
class Row:
    """One measurement (or one test, when it has none to compare) and its verdict."""

    nodeid: str
    key: str
    status: str
    reason: str = ""
    a_median: float | None = None
    b_median: float | None = None
    estimate: RatioEstimate | None = None


@dataclass
class AbReport:
    """Everything ``jaxperf ab`` found; ``rows`` is what it prints."""

    base: str
    base_commit: str
    dirty: list[str]
    rounds: int
    threshold: float
    runs: list[SideRun] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failing(self) -> bool:
        return any(row.status in FAILING for row in self.rows)

    @property
    def tests(self) -> int:
        return len({row.nodeid for row in self.rows})

    def to_dict(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "base_commit": self.base_commit,
            "dirty": self.dirty,
            "rounds": self.rounds,
            "threshold": self.threshold,
            "seconds": self.seconds,
            "rows": [
                {
                    "nodeid": r.nodeid,
                    "key": r.key,
                    "status": r.status,
                    "reason": r.reason,
                    "a_median": r.a_median,
                    "b_median": r.b_median,
                    "ratio": r.estimate.ratio if r.estimate else None,
                    "ci_low": r.estimate.ci_low if r.estimate else None,
                    "ci_high": r.estimate.ci_high if r.estimate else None,
                }
                for r in self.rows
            ],
            "processes": [
                {"side": r.side, "round": r.round, "seconds": r.seconds, "exitstatus": r.exitstatus}
                for r in self.runs
            ],
        }


def summarize(runs: Sequence[SideRun], threshold: float = DEFAULT_THRESHOLD) -> list[Row]:
    """Rows from the processes of both sides: failures first by test, then each measurement's verdict."""
    a_runs = [r for r in runs if r.side == "A"]
    b_runs = [r for r in runs if r.side == "B"]
    rows: list[Row] = []
    tests = sorted({t for r in runs for t in r.outcomes})
    broken: set[str] = set()
    for test in tests:
        a_seen = [r.outcomes[test] for r in a_runs if test in r.outcomes]
        b_seen = [r.outcomes[test] for r in b_runs if test in r.outcomes]
        if not a_seen or not b_seen:
            status = ONLY_ON_B if not a_seen else ONLY_ON_A
            rows.append(Row(test, "", status, "the test exists (or was selected) on one side only"))
            broken.add(test)
            continue
        a_bad = [o for o in a_seen if o[0] in ("failed", "error")]
        b_bad = [o for o in b_seen if o[0] in ("failed", "error")]
        if a_bad or b_bad:
            status = FAILED_ON_BOTH if a_bad and b_bad else FAILED_ON_B if b_bad else FAILED_ON_A
            reasons = []
            for side, bad, seen in (("A", a_bad, a_seen), ("B", b_bad, b_seen)):
                if bad:
                    reasons.append(f"{side}: {bad[0][0]} in {len(bad)} of {len(seen)} run(s): {bad[0][1]}")
            rows.append(Row(test, "", status, "; ".join(reasons)))
            broken.add(test)
    keys = sorted({k for r in runs for k in r.medians if k[0] not in broken})
    for key in keys:
        pairs = _paired_medians(runs, key)
        if len(pairs) < 2:
            sides = {r.side for r in runs if key in r.medians}
            if len(sides) == 1:
                status = ONLY_ON_A if sides == {"A"} else ONLY_ON_B
                rows.append(Row(*key, status, "the measurement exists on one side only"))
            else:
                rows.append(Row(*key, NOT_MEASURED, f"measured in only {len(pairs)} complete round(s)"))
            continue
        a_medians, b_medians = [p[0] for p in pairs], [p[1] for p in pairs]
        estimate = ratio_of_medians(a_medians, b_medians)
        status = judge(estimate, threshold)
        rows.append(
            Row(*key, status, _reason(estimate, threshold), statistics.median(a_medians),
                statistics.median(b_medians), estimate)
        )  # fmt: skip
    measured_tests = {k[0] for k in keys}
    for test in tests:
        if test not in broken and test not in measured_tests:
            skipped = all(r.outcomes.get(test, ("",))[0] == "skipped" for r in runs if test in r.outcomes)
            why = "skipped on both sides" if skipped else "passed, with no jaxperf measurement to compare"
            rows.append(Row(test, "", NOT_MEASURED, why))
    return rows


def _paired_medians(runs: Sequence[SideRun], key: tuple[str, str]) -> list[tuple[float, float]]:
    by_round: dict[int, dict[str, float]] = {}
    for run in runs:
        if key in run.medians:
            by_round.setdefault(run.round, {})[run.side] = run.medians[key]
    return [(sides["A"], sides["B"]) for _, sides in sorted(by_round.items()) if len(sides) == 2]


def _reason(estimate: RatioEstimate, threshold: float) -> str:
    def percent(x: float) -> str:
        return f"{x - 1:+.1%}".replace("-", "−")

    return (
        f"B/A time {percent(estimate.ratio)} (90% CI {percent(estimate.ci_low)}…{percent(estimate.ci_high)}, "
        f"{estimate.rounds} rounds, threshold ±{threshold:.0%})"
    )


# --- git and processes -------------------------------------------------------------------------------


def _git(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["git", *args], cwd=directory, capture_output=True, text=True, check=False)
    except OSError as error:
        raise AbError(f"git cannot be run ({error}); jaxperf ab needs git") from None


def repository_root(directory: Path) -> Path:
    done = _git(directory, "rev-parse", "--show-toplevel")
    if done.returncode != 0:
        raise AbError(f"{directory} is not inside a git repository: jaxperf ab compares git revisions")
    return Path(done.stdout.strip())


def resolve_revision(root: Path, revision: str) -> str:
    """The commit a revision names; AbError naming it when there is none."""
    if not revision or revision.startswith("-"):
        raise AbError(f"--base {revision!r} is not a revision")
    done = _git(root, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{revision}^{{commit}}")
    if done.returncode != 0:
        raise AbError(
            f"--base {revision!r}: no such revision in {root} (a branch, tag or commit; fetch it first if it "
            "is a remote's)"
        )
    return done.stdout.strip()


def uncommitted_changes(root: Path) -> list[str]:
    """The working tree's changes against HEAD, untracked files included (``git status --porcelain``)."""
    done = _git(root, "status", "--porcelain")
    return [line for line in done.stdout.splitlines() if line.strip()]


@contextmanager
def base_worktree(root: Path, commit: str) -> Iterator[Path]:
    """The base revision checked out in a temporary worktree, removed on the way out, Ctrl-C included."""
    scratch = Path(tempfile.mkdtemp(prefix="jaxperf-ab-base-"))
    path = scratch / "base"
    try:
        # An interrupt during the add would kill git half-way (subprocess kills its child), leaving a
        # locked, half-made worktree that nothing removes: it takes effect once git is done.
        with _interrupts_deferred():
            done = _git(root, "worktree", "add", "--detach", str(path), commit)
        if done.returncode != 0:
            raise AbError(f"git worktree add failed for {commit[:12]}: {done.stderr.strip()}")
        yield path
    finally:
        _git(root, "worktree", "remove", "--force", str(path))
        shutil.rmtree(scratch, ignore_errors=True)
        _git(root, "worktree", "prune")


@contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Ctrl-C or SIGTERM during the block takes effect at its end, as a KeyboardInterrupt.

    A signal the process ignores (SIGINT in a background job of a shell without job control, for one)
    stays ignored: it was never going to interrupt.
    """
    received: list[int] = []

    def defer(signum: int, frame: object) -> None:
        received.append(signum)

    try:
        previous = {
            number: signal.signal(number, defer)
            for number in (signal.SIGINT, signal.SIGTERM)
            if signal.getsignal(number) is not signal.SIG_IGN
        }
    except ValueError:  # not the main thread: leave the handlers alone
        yield
        return
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if received:
        raise KeyboardInterrupt


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (a CI job cancelled) unwinds like Ctrl-C, so the worktree is removed either way."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        # An ignored SIGTERM stays ignored, as in _interrupts_deferred.
        previous = signal.getsignal(signal.SIGTERM)
        if previous is not signal.SIG_IGN:
            signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave the handler alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_side(
    side: str,
    round_index: int,
    directory: Path,
    pytest_args: Sequence[str],
    scratch: Path,
) -> SideRun:
    """One fresh pytest process at ``directory``: measured with --jaxperf, gated against no baseline.

    Each process keeps its randomized memory layout (address-space and hash randomization): a fixed layout
    steadies one side's timings but turns the layout's effect, a few percent either way, into a bias
    between two directories that hold the same code; randomized, it is noise that the rounds average.
    """
    from .results import load_results

    results = scratch / f"{side}{round_index:03d}.json"
    outcomes = scratch / f"{side}{round_index:03d}-outcomes.json"
    python_path = [str(directory), str(scratch), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(python_path), OUTCOMES_ENV: str(outcomes)}
    command = [
        sys.executable, "-m", "pytest", "--jaxperf", f"--jaxperf-json={results}",
        f"--jaxperf-baselines={scratch / 'no-baselines'}", "-p", OUTCOMES_MODULE, "-p", "no:cacheprovider",
        "-q", *pytest_args,
    ]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, cwd=directory, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    reported: dict[str, Any] = json.loads(outcomes.read_text()) if outcomes.exists() else {}
    measured = load_results(results).measured if results.exists() else {}
    return SideRun(
        side,
        round_index,
        seconds,
        int(reported.get("exitstatus", done.returncode)),
        {str(k): (str(v[0]), str(v[1])) for k, v in dict(reported.get("outcomes") or {}).items()},
        {key: float((record.timing or {})["median"]) for key, record in measured.items()},
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
        progress(
            f"jaxperf ab: the working tree has {len(report.dirty)} uncommitted change(s); B is the working "
            "tree as it is, changes included"
        )
    start = time.perf_counter()
    with _terminate_as_interrupt(), base_worktree(root, commit) as worktree:
        side_directory = {"A": worktree / here.relative_to(root.resolve()), "B": here}
        with tempfile.TemporaryDirectory(prefix="jaxperf-ab-") as scratch_name:
            scratch = Path(scratch_name)
            (scratch / f"{OUTCOMES_MODULE}.py").write_text(OUTCOMES_PLUGIN, encoding="utf-8")
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


def report_rows(report: AbReport) -> list[tuple[str, ...]]:
    """The table ``jaxperf ab`` prints."""
    rows: list[tuple[str, ...]] = [("test", "measurement", "A ms", "B ms", "B/A time", "90% CI", "verdict")]
    for row in report.rows:
        estimate = row.estimate
        rows.append(
            (
                row.nodeid,
                row.key or "-",
                "-" if row.a_median is None else f"{row.a_median * 1e3:.4g}",
                "-" if row.b_median is None else f"{row.b_median * 1e3:.4g}",
                "-" if estimate is None else f"{estimate.ratio:.3f}",
                "-" if estimate is None else f"{estimate.ci_low:.3f}…{estimate.ci_high:.3f}",
                row.status,
            )
        )
    return rows
