"""A test's outcome from what the rooms below the fixture raise: the one place their exceptions become
``pytest.fail`` or ``pytest.skip``, named by the case."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import pytest

from .baseline import BaselineError
from .errors import CaseFailed, CaseUnavailable

if TYPE_CHECKING:
    from collections.abc import Iterator


@contextlib.contextmanager
def as_outcome(case_id: str) -> Iterator[None]:
    """A failed check fails the test and an unavailable case skips it, named by the case
    (``jaxperf bf16-d8: ...``); an unreadable baseline fails it, named by its file."""
    __tracebackhide__ = True
    try:
        yield
    except CaseFailed as error:
        failed, skipped = f"jaxperf {case_id}: {error}", ""
    except CaseUnavailable as error:
        failed, skipped = "", f"jaxperf {case_id}: {error}"
    except BaselineError as error:
        failed, skipped = f"jaxperf: {error}", ""
    else:
        return
    # Outside the except block: the report shows the message, not a chained traceback.
    if skipped:
        pytest.skip(skipped)
    pytest.fail(failed, pytrace=False)
