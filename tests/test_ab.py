"""`jaxperf ab` end to end, in a git repository made for each test: the console script as a user runs it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import git

JAXPERF = shutil.which("jaxperf")
pytestmark = pytest.mark.skipif(JAXPERF is None, reason="the jaxperf console script is not installed")

MEASURED = textwrap.dedent(
    """
    import os
    import jax
    import jax.numpy as jnp

    WORK = {work}


    def compute(x):
        for _ in range(WORK):
            x = jnp.tanh(x @ x.T @ x)
        return x


    def test_same(jaxperf):
        jaxperf.measure(jax.jit(lambda x: jnp.tanh(x @ x.T)), jnp.ones((64, 64)), name="same")


    def test_slow(jaxperf):
        jaxperf.measure(jax.jit(compute), jnp.ones((192, 192)) / 192, name="compute")


    def test_breaks():
        assert {breaks_ok}, "the change broke this"


    def test_fixed():
        assert {fixed_ok}, "broken at base"
    """
)


def jaxperf(directory: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    assert JAXPERF is not None
    return subprocess.run(
        [JAXPERF, *args], cwd=directory, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """A project at its base commit: two measured tests, one that passes, one that fails."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "pytest.ini").write_text("[pytest]\naddopts = -p no:randomly\njaxperf_budget = 0.3\n")
    (project / "test_model.py").write_text(MEASURED.format(work=1, breaks_ok=True, fixed_ok=False))
    git(project, "init", "-q")
    git(project, "add", ".")
    git(project, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "base")
    return project


def worktrees(project: Path) -> list[str]:
    return [
        line
        for line in git(project, "worktree", "list", "--porcelain").splitlines()
        if line.startswith("worktree ")
    ]


def test_a_revision_that_does_not_exist_is_misuse(repository: Path):
    done = jaxperf(repository, "ab", "--base", "no-such-branch", "--", "-q")
    assert done.returncode == 2
    assert "--base 'no-such-branch': no such revision" in done.stderr
    assert len(worktrees(repository)) == 1


def test_outside_a_git_repository_is_misuse(tmp_path: Path):
    done = jaxperf(tmp_path, "ab", "--base", "main")
    assert done.returncode == 2
    assert "is not inside a git repository" in done.stderr


@pytest.mark.parametrize(("args", "message"), [(["--rounds", "1"], "at least 2 are needed"),
                                               (["--rounds", "five"], "'five' is not a whole number"),
                                               (["--threshold", "2"], "'2' is outside (0, 1)")])  # fmt: skip
def test_bad_arguments_name_the_value(repository: Path, args: list[str], message: str):
    done = jaxperf(repository, "ab", "--base", "HEAD", *args)
    assert done.returncode == 2
    assert message in done.stderr


def test_uncommitted_changes_are_named_with_where_they_lie() -> None:
    from pytest_jaxperf.ab.driver import describe_changes

    changes = [" M suites/test_x.py", "?? notes.txt", "R  old.py -> pkg/new.py"]
    assert describe_changes(changes, Path("suites")) == (
        "suites/test_x.py (modified); notes.txt (untracked, outside suites/); pkg/new.py (renamed, outside "
        "suites/)"
    )
    assert describe_changes(changes * 3, Path(), shown=2).endswith("; and 7 more")


def test_every_subcommand_has_help(repository: Path):
    for command in ("report", "compare", "ab"):
        done = jaxperf(repository, command, "--help")
        assert done.returncode == 0
        assert f"jaxperf {command}" in done.stdout
        assert "%%" not in done.stdout  # a percent sign printed as the reader types it


def test_dirty_tree_failures_one_sided_tests_and_a_regression(repository: Path):
    # The working tree, uncommitted: test_slow does 8 times the work, test_breaks fails, test_fixed
    # passes, and test_new exists only here.
    changed = MEASURED.format(work=8, breaks_ok=False, fixed_ok=True) + "\n\ndef test_new():\n    pass\n"
    (repository / "test_model.py").write_text(changed)
    done = jaxperf(repository, "ab", "--base", "HEAD", "--rounds", "2", "--json", "ab.json", "--", "-q")
    output = done.stdout
    assert "1 uncommitted change(s); B is the working tree as it is" in done.stderr
    assert "changes included: test_model.py (modified)" in done.stderr
    assert done.returncode == 1, output + done.stderr
    table = output.split("\n\n")[0] if "\n\n" in output else output
    lines: dict[str, str] = {}
    for line in table.splitlines():
        if line.startswith("test_model.py::"):
            lines.setdefault(line.split()[0], line)  # the table's row, not the explanation below it
    assert lines["test_model.py::test_breaks"].endswith("failed on B")
    assert lines["test_model.py::test_fixed"].endswith("failed on A")
    assert lines["test_model.py::test_new"].endswith("only in B")
    assert lines["test_model.py::test_slow"].endswith("regressed")
    assert "test_model.py::test_same" in lines
    assert "B: failed in 2 of 2 run(s): AssertionError: the change broke this" in output
    assert "s per test" in output
    assert (repository / "ab.json").exists()
    assert len(worktrees(repository)) == 1  # the base worktree is gone


def start_ab_and_wait_for_the_worktree(repository: Path, *, new_session: bool) -> subprocess.Popen[str]:
    """`jaxperf ab` running in the background, once its base worktree exists."""
    assert JAXPERF is not None
    process = subprocess.Popen(
        [JAXPERF, "ab", "--base", "HEAD", "--rounds", "4", "--", "-q"],
        cwd=repository,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=new_session,
        # Ctrl-C must reach it even where this test runs with SIGINT ignored (a background job).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    while len(worktrees(repository)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(worktrees(repository)) == 2, "the base worktree never appeared"
    return process


def test_ctrl_c_removes_the_worktree(repository: Path):
    # Ctrl-C in a terminal reaches the whole foreground process group: jaxperf and its pytest child.
    process = start_ab_and_wait_for_the_worktree(repository, new_session=True)
    base = Path(worktrees(repository)[1].split(" ", 1)[1])
    time.sleep(2)  # into the first round's process
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted; the base worktree was removed" in stderr
    assert len(worktrees(repository)) == 1
    assert not base.exists()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM is POSIX")
def test_a_cancelled_job_removes_the_worktree_too(repository: Path):
    process = start_ab_and_wait_for_the_worktree(repository, new_session=False)
    process.terminate()
    process.communicate(timeout=60)
    assert process.returncode == 130
    assert len(worktrees(repository)) == 1


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_a_killed_run_leaves_its_worktree_for_the_next_to_remove(repository: Path):
    from pytest_jaxperf.ab.worktree import remove_stale_worktrees

    process = start_ab_and_wait_for_the_worktree(repository, new_session=True)
    base = Path(worktrees(repository)[1].split(" ", 1)[1])
    os.killpg(process.pid, signal.SIGKILL)  # nothing runs on the way out
    process.communicate(timeout=60)
    assert len(worktrees(repository)) == 2  # registered, and on disk
    assert remove_stale_worktrees(repository) == [base]
    assert len(worktrees(repository)) == 1
    assert not base.parent.exists()


@pytest.fixture
def interruptible() -> Iterator[None]:
    """SIGINT raising KeyboardInterrupt and SIGTERM at its default, whatever this process inherited."""
    previous = {n: signal.getsignal(n) for n in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    for number, handler in previous.items():
        signal.signal(number, handler)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_while_git_adds_the_worktree_waits_for_git(signum: int, interruptible: None) -> None:
    # The cancelled-job test above raced with it: SIGTERM during `git worktree add` killed git half-way
    # and left a locked worktree behind (1 CI run in about 20).
    from pytest_jaxperf.signals import interrupts_deferred

    steps: list[str] = []

    def signalled_while_git_runs() -> None:
        with interrupts_deferred():
            os.kill(os.getpid(), signum)
            time.sleep(0.05)  # the signal arrives here, and waits
            steps.append("git done")

    with pytest.raises(KeyboardInterrupt):
        signalled_while_git_runs()
    assert steps == ["git done"]
    # The handlers are back: a SIGINT now interrupts at once.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_an_ignored_interrupt_stays_ignored(interruptible: None) -> None:
    # A background job of a shell without job control ignores SIGINT: it was never going to interrupt,
    # and must not start to (CI, run that way, failed here when the handlers assumed Python's default).
    from pytest_jaxperf.signals import interrupts_deferred, terminate_as_interrupt

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with terminate_as_interrupt(), interrupts_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN


def test_a_side_whose_pytest_cannot_start_is_reported(repository: Path):
    (repository / "conftest.py").write_text("import no_such_module_anywhere\n")
    done = jaxperf(repository, "ab", "--base", "HEAD", "--rounds", "2", "--", "-q")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "pytest at B (working tree) exited" in done.stderr
    assert "no_such_module_anywhere" in done.stderr
    assert len(worktrees(repository)) == 1


def test_selecting_no_test_is_misuse(repository: Path):
    done = jaxperf(
        repository, "ab", "--base", "HEAD", "--rounds", "2", "--", "-q", "-k", "no_test_has_this_name"
    )
    assert done.returncode == 2
    assert "no test ran at either side" in done.stderr
