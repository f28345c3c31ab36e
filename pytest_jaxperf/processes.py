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
import socket
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
    # The child asks the kernel to kill it with this process (die_with_parent, as the plugin loads): set
    # from the child itself, never in a fork of this multithreaded process (preexec_fn).
    return subprocess.run(
        [sys.executable, "-m", "pytest", *args],
        cwd=cwd,
        env={**env, PARENT_PID_ENV: str(os.getpid())},
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
    )


#: Set in a child pytest to its parent's process id: the child dies with that parent.
PARENT_PID_ENV = "JAXPERF_PARENT_PID"
#: Linux's prctl option that sends the calling process a signal when its parent dies.
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In a child pytest that :func:`run_pytest` started: be killed when the parent is (SIGKILL, the OOM
    killer: it cannot clean up), never left measuring, orphaned; exit at once if it is already gone.
    Linux only; elsewhere, and in any other process, nothing."""
    expected = os.environ.pop(PARENT_PID_ENV, None)  # not inherited by this process's own children
    if expected is None or sys.platform != "linux":
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if str(os.getppid()) != expected:  # the parent died before the request was made
        os._exit(1)


@contextlib.contextmanager
def scratch_directory(purpose: str) -> Iterator[Path]:
    """A temporary folder ``jaxperf-<purpose>-<owner>-…`` removed on leaving; those of the same purpose
    that a killed process of this machine left behind (see :func:`left_behind`) are removed first."""
    base = Path(tempfile.gettempdir())
    prefix = f"jaxperf-{purpose}-"
    for stale in base.glob(f"{prefix}*"):
        if left_behind(stale.name, prefix):
            shutil.rmtree(stale, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix=f"{prefix}{owner_tag()}-") as name:
        yield Path(name)


def owner_tag() -> str:
    """This process as a name part, ``<host>-<pid>``: a folder a process makes says who made it."""
    return f"{_host()}-{os.getpid()}"


def left_behind(name: str, prefix: str) -> bool:
    """Whether ``name`` (``<prefix><host>-<pid>-…``, see :func:`owner_tag`) was made by a process of this
    host that is gone. Another host's (a container sharing the folder, its process ids its own) never."""
    owner = re.match(rf"{re.escape(prefix)}{re.escape(_host())}-(\d+)-", name)
    return owner is not None and not process_alive(int(owner.group(1)))


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "host"


def process_alive(pid: int) -> bool:
    """Whether a process of that id is running (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process of that number
        return True
    return True
