"""What a measured record's fields must hold, checked where a file is read: a baseline's record (the store)
and a check's timing (a results file). Both say a wrong field in the same words; each names its own record
and shows the value in its own length.

A verdict is computed from nothing that fails here: a median of NaN, samples that are not a list of times,
a count of -5.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    Shown = Callable[[Any], str]
    """How a wrong value is quoted in a message: its repr, shortened."""


def is_positive_number(value: Any) -> bool:
    """A finite number above 0 (not a bool): what a time or a median read from a file must be."""
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < math.inf


def is_non_negative_number(value: Any) -> bool:
    """A finite number of at least 0 (not a bool): an interval's end, a noise floor."""
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < math.inf


def first_problem(*problems: str | None) -> str | None:
    """The first of ``problems`` found, in the order the fields are read; None where there is none. Every
    field is checked: a record is a few fields, and a bad one is rare."""
    return next((problem for problem in problems if problem), None)


def median_problem(median: Any, shown: Shown) -> str | None:
    """Why ``median`` is no median of a measurement; None when it is one."""
    if is_positive_number(median):
        return None
    return f"has a median of {shown(median)}, not a positive number of seconds"


def seconds_list_problem(name: str, values: Any, shown: Shown, *, empty_allowed: bool = True) -> str | None:
    """Why ``values`` (the samples, the process medians) is no list of times; None when it is one."""
    if isinstance(values, list) and (values or empty_allowed) and all(is_positive_number(v) for v in values):
        return None
    return f"has {name} {shown(values)}, not a list of positive numbers of seconds"


def figure_problem(name: str, value: Any, shown: Shown) -> str | None:
    """Why ``value`` is no figure (an interval's end, a percentile, a noise floor); None when it is one."""
    if is_non_negative_number(value):
        return None
    return f"has {name} {shown(value)}, not a finite number of at least 0"


def count_problem(name: str, value: Any, shown: Shown, *, positive: bool) -> str | None:
    """Why ``value`` is no count: ``not a positive count`` (from 1) or ``not a count`` (from 0); None when
    it is one."""
    if not isinstance(value, bool) and isinstance(value, int) and value >= (1 if positive else 0):
        return None
    return f"has {name} {shown(value)}, not {'a positive count' if positive else 'a count'}"
