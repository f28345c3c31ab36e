"""The child processes jaxperf starts: git, and a fresh pytest.

One place that runs git and one that starts a child pytest, for the plugin (the commit a baseline is
recorded at, the noise floor's extra processes) and for ``jaxperf ab`` (its worktree, its rounds). Standard
library only: ``jaxperf ab`` and the plugin's session end import it, and neither needs more.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

#: What ``head_commit`` answers where there is no commit to name (no git, no repository, no commit yet).
UNKNOWN_COMMIT = "unknown"


class GitUnavailable(OSError):
    """git could not be started at all: not installed, not on PATH, or the directory is gone.

    A git that runs and fails (not a repository, no such revision) is not this: its exit status says so.
    """


def run_git(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``git *args`` run in ``directory``, its output captured as text; a non-zero exit status is returned,
    not raised, because the callers read it as an answer ("not a repository", "no such revision").

    Raises GitUnavailable when git cannot be run; its message reads ``git cannot be run (<why>)``.
    """
    try:
        return subprocess.run(["git", *args], cwd=directory, capture_output=True, text=True, check=False)
    except OSError as error:
        raise GitUnavailable(f"git cannot be run ({error})") from error


def git_output(directory: Path, *args: str) -> str | None:
    """The standard output of ``git *args`` in ``directory``; None when git failed or cannot be run."""
    try:
        done = run_git(directory, *args)
    except GitUnavailable:
        return None
    return done.stdout if done.returncode == 0 else None


def head_commit(directory: Path) -> str:
    """HEAD's commit of the repository holding ``directory``, abbreviated to 12 hex digits; ``unknown``
    where there is none (git missing, not a repository, a repository without commits)."""
    output = git_output(directory, "rev-parse", "--short=12", "HEAD")
    return (output or "").strip() or UNKNOWN_COMMIT


def run_pytest(args: Sequence[str], *, cwd: Path, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """A fresh ``python -m pytest *args`` with this interpreter, in ``cwd`` with exactly the environment
    ``env``; its output captured as text, its exit status returned, not raised (pytest's exit status is
    an answer: 1 is failed tests, 5 none collected).

    A byte the child prints that is not text in the locale's encoding is replaced, not raised: the output
    is for showing, and a stray byte must not lose the run.
    """
    return subprocess.run(
        [sys.executable, "-m", "pytest", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )


#: Linux's prctl option that sends the child a signal when its parent dies.
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # In the child before exec: a parent killed outright (SIGKILL, the OOM killer) cannot clean up, so the
    # kernel kills the child with it rather than leaving it measuring, orphaned.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@contextlib.contextmanager
def scratch_directory(purpose: str) -> Iterator[Path]:
    """A temporary folder ``jaxperf-<purpose>-<pid>-…`` removed on leaving; those of the same purpose
    that a killed process left behind (their process gone) are removed first."""
    base = Path(tempfile.gettempdir())
    for stale in base.glob(f"jaxperf-{purpose}-*"):
        owner = re.match(rf"jaxperf-{re.escape(purpose)}-(\d+)-", stale.name)
        if owner and not process_alive(int(owner.group(1))):
            shutil.rmtree(stale, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix=f"jaxperf-{purpose}-{os.getpid()}-") as name:
        yield Path(name)


def process_alive(pid: int) -> bool:
    """Whether a process of that id is running (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process of that number
        return True
    return True
