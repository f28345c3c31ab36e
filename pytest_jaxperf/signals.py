"""Ctrl-C and SIGTERM held back while a short step must finish whole (git making a worktree, baselines
being written), and SIGTERM unwinding like Ctrl-C (a cancelled CI job cleans up as an interrupted one)."""

from __future__ import annotations

import signal
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator


@contextmanager
def interrupts_deferred() -> Iterator[None]:
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
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (a CI job cancelled) unwinds like Ctrl-C, so the worktree is removed either way."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        # An ignored SIGTERM stays ignored, as in interrupts_deferred.
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
