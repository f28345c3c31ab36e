"""Sizes in bytes as people write and read them: ``2048``, ``"512MiB"``, ``"2 GB"``; ``157.3 GiB``; and a
relative change as people read it: ``+5.0%``."""

from __future__ import annotations

import re
from typing import Any

#: Byte units by lower-case name, SI and binary.
BYTE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}


def parse_bytes(value: Any) -> int:
    """``2048``, ``"512MiB"``, ``"2 GB"`` → bytes. Raises ValueError naming the value."""
    if isinstance(value, bool):
        raise ValueError(f"expected a byte count, got {value!r}")
    if isinstance(value, int):
        number, unit = float(value), ""
    elif isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", value)
        if not match or match.group(2).lower() not in BYTE_UNITS:
            raise ValueError(
                f"cannot read {value!r} as a size: use a number with one of the units "
                "B, KB, MB, GB, TB, KiB, MiB, GiB, TiB"
            )
        number, unit = float(match.group(1)), match.group(2).lower()
    else:
        raise ValueError(f"expected a byte count or a size string, got {value!r}")
    size = int(number * BYTE_UNITS[unit])
    if size <= 0:
        raise ValueError(f"a size must be positive, got {value!r}")
    return size


_UNITS = (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024))


def format_bytes(count: float) -> str:
    """``157.3 GiB``, ``512.0 MiB``, ``300 B``."""
    for unit, size in _UNITS:
        if abs(count) >= size:
            return f"{count / size:.1f} {unit}"
    return f"{int(count)} B"


def percent(x: float) -> str:
    """A relative change with its sign and a true minus: ``+5.0%``, ``−3.2%``."""
    return f"{x:+.1%}".replace("-", "−")
