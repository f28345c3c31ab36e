"""Whether a file asked for can be written, asked before the work that produces it starts.

A run of many minutes that ends in an unwritable ``--jaxperf-json`` path loses its results; asked up front,
the same mistake is a usage error before any test runs. Standard library only: the plugin asks it while
pytest configures.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path


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
