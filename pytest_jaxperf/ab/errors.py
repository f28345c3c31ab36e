"""The error ``jaxperf ab`` reports as misuse (exit 2), raised by its worktree and its driver alike."""

from __future__ import annotations


class AbError(Exception):
    """Misuse: not a git repository, a base revision that does not exist, bad arguments (exit 2)."""
