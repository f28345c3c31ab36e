"""Writing files that must never be seen half written: whether a file asked for can be written, asked
before the work that produces it starts; a folder's lock held by one writer at a time; and a file written
through a temporary file and a rename (baselines, results, the report page).

A run of many minutes that ends in an unwritable ``--jaxperf-json`` path loses its results; asked up front,
the same mistake is a usage error before any test runs. Standard library only: the plugin asks it while
pytest configures.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

try:  # POSIX; elsewhere concurrent recorders are not serialized
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

from .errors import BaselineError

if TYPE_CHECKING:
    from collections.abc import Iterator


def why_unwritable(path: Path) -> str | None:
    """Why the file ``path`` cannot be written (created where missing, its folders with it); None when it
    can be, as far as the file system says before trying."""
    if path.is_dir():
        return "it is a folder"
    folder = path.parent
    if path.exists():  # replaced through a temporary file and a rename: its folder must take both
        return None if os.access(folder, os.W_OK | os.X_OK) else f"nothing can be created in {folder}"
    while not folder.exists():  # the nearest existing folder is where anything new gets created
        if folder.parent == folder:
            break
        folder = folder.parent
    if not folder.is_dir():
        return f"{folder} is a file, not a folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"nothing can be created in {folder}"
    return None


def why_folder_unwritable(folder: Path) -> str | None:
    """Why files cannot be created in ``folder`` (made where missing); None when they can be."""
    if not folder.exists():
        return why_unwritable(folder / "file")
    if not folder.is_dir():
        return "it is a file, not a folder"
    return None if os.access(folder, os.W_OK | os.X_OK) else "nothing can be created in it"


#: The start of a temporary file's name: never a baseline's (no ``.json`` suffix), and removed by the next
#: writer of its folder when a killed process left it behind.
TEMPORARY_PREFIX = ".jaxperf-partial-"
#: The lock file of a folder whose own lock cannot be taken (a network file system without ``flock`` on
#: directories).
LOCK_FILE = ".jaxperf.lock"


#: How long a writer waits for another to release a folder's lock: a write takes milliseconds, so a lock
#: held this long belongs to a process that stopped (Ctrl-Z, a hung network mount).
LOCK_WAIT_SECONDS = 60.0


@contextlib.contextmanager
def locked(directory: Path, wait_seconds: float = LOCK_WAIT_SECONDS) -> Iterator[None]:
    """Hold ``directory``'s exclusive lock (created if absent); temporary files that a killed writer left
    in it are removed once it is held, since every writer writes only while holding it. BaselineError
    when another process holds it beyond ``wait_seconds``."""
    directory.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if fcntl is not None:
            # The folder itself is locked, so no lock file is left among the baselines; where that is
            # refused, a lock file beside them.
            handle = os.open(directory, os.O_RDONLY)
            stack.callback(os.close, handle)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                _wait_for_lock(handle, directory, wait_seconds)
            except OSError:
                handle = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
                stack.callback(os.close, handle)
                _wait_for_lock(handle, directory, wait_seconds)
        for stale in directory.glob(f"{TEMPORARY_PREFIX}*"):
            stale.unlink(missing_ok=True)
        yield


def _wait_for_lock(handle: int, directory: Path, wait_seconds: float) -> None:
    # Polled, not blocked on: a blocked flock would leave the recorder deaf to everything but SIGKILL.
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise BaselineError(
                    f"{directory} stayed locked by another recorder for {wait_seconds:.0f} s (stopped with "
                    "Ctrl-Z? a hung mount?); nothing was written to it"
                ) from None
            time.sleep(0.05)


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f"{TEMPORARY_PREFIX}{path.name}.", dir=path.parent)
    try:
        # mkstemp makes the file private (0600); what is written is an ordinary file: mode from the umask.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
