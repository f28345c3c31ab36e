"""A competing load, started by the benchmark that measures under it."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator


@contextlib.contextmanager
def competing_load(busy: bool = True) -> Iterator[None]:
    """A second process keeping one core busy for the duration (nothing when ``busy`` is false)."""
    if not busy:
        yield
        return
    burner = subprocess.Popen([sys.executable, "-c", "while True:\n    pass"])
    try:
        yield
    finally:
        burner.kill()
        burner.wait()
