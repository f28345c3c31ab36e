"""The git side of ``jaxperf ab``: the repository, the base revision, and A's temporary worktree."""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ..processes import GitUnavailable, left_behind, owner_tag, run_git
from ..signals import interrupts_deferred
from .errors import AbError

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Iterator


#: A base worktree's folder: ``jaxperf-ab-base-<host>-<pid of its creator>-<random>/base``.
_BASE_PREFIX = "jaxperf-ab-base-"


def _git(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``git *args`` in ``directory``; no git at all is misuse of ``jaxperf ab`` (exit 2), not a crash."""
    try:
        return run_git(directory, *args)
    except GitUnavailable as error:
        raise AbError(f"{error}; jaxperf ab needs git") from None


def repository_root(directory: Path) -> Path:
    """The top folder of the git repository holding ``directory``; AbError outside one."""
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
    remove_stale_worktrees(root)
    # The creator's process id in the name: a later run knows a worktree whose creator is gone.
    scratch = Path(tempfile.mkdtemp(prefix=f"{_BASE_PREFIX}{owner_tag()}-"))
    path = scratch / "base"
    try:
        # An interrupt during the add would kill git half-way (subprocess kills its child), leaving a
        # locked, half-made worktree that nothing removes: it takes effect once git is done.
        with interrupts_deferred():
            done = _git(root, "worktree", "add", "--detach", str(path), commit)
        if done.returncode != 0:
            raise AbError(f"git worktree add failed for {commit[:12]}: {done.stderr.strip()}")
        yield path
    finally:
        _git(root, "worktree", "remove", "--force", str(path))
        shutil.rmtree(scratch, ignore_errors=True)
        _git(root, "worktree", "prune")


def remove_stale_worktrees(root: Path) -> list[Path]:
    """Remove the base worktrees an earlier ``jaxperf ab`` made and could not remove (killed outright,
    SIGKILL or the OOM killer): those whose creating process is gone. Returns their paths."""
    listing = _git(root, "worktree", "list", "--porcelain").stdout
    removed = []
    for line in listing.splitlines():
        if not line.startswith("worktree "):
            continue
        path = Path(line.removeprefix("worktree "))
        if path.name != "base" or not left_behind(path.parent.name, _BASE_PREFIX):
            continue
        _git(root, "worktree", "remove", "--force", str(path))
        shutil.rmtree(path.parent, ignore_errors=True)
        removed.append(path)
    if removed:
        _git(root, "worktree", "prune")
    return removed
