"""A test's outcome from what the rooms below the fixture raise: the one place their exceptions become
``pytest.fail`` or ``pytest.skip``, named by the case; and a regressed check made the test's failure."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from .errors import BaselineError, CaseFailed, CaseUnavailable, PerformanceRegression
from .report import explanation_lines
from .verdicts import REGRESSED

if TYPE_CHECKING:
    from types import TracebackType

    from .records import CheckRecord
    from .settings import PluginSettings


class as_outcome:  # lower case: used as a function, ``with as_outcome(case_id): ...``
    """A failed check fails the test and an unavailable case skips it, named by the case
    (``jaxperf bf16-d8: ...``); an unreadable baseline fails it, named by its file.

    A class, not a generator: its ``__exit__`` is hidden from tracebacks, so a skip is reported at the
    test's line, and the outcome carries the context of the error it replaces (an explained run
    failure's original error; nothing for a check's judgement), as pytest would show a ``pytest.fail``
    called where the check failed.
    """

    def __init__(self, case_id: str) -> None:
        self.case_id = case_id

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        __tracebackhide__ = True
        outcome: BaseException
        if isinstance(error, CaseFailed):
            outcome = pytest.fail.Exception(f"jaxperf {self.case_id}: {error}", pytrace=False)
        elif isinstance(error, CaseUnavailable):
            outcome = pytest.skip.Exception(f"jaxperf {self.case_id}: {error}")
        elif isinstance(error, BaselineError):
            outcome = pytest.fail.Exception(f"jaxperf: {error}", pytrace=False)
        else:
            return
        suppressed = error.__suppress_context__ or isinstance(error, BaselineError)
        context = None if suppressed else error.__context__
        try:
            raise outcome
        finally:
            # Raised here, the outcome's context would be ``error`` itself, shown as a second copy of
            # the message: it takes the context ``error`` had instead.
            outcome.__context__ = context
            outcome.__suppress_context__ = context is None


def fail_on_regression(record: CheckRecord, variant_id: str, settings: PluginSettings) -> None:
    """Raise :class:`PerformanceRegression` for a regressed check (not while recording baselines)."""
    __tracebackhide__ = True
    if record.verdict and record.verdict["status"] == REGRESSED and not settings.update_baselines:
        why = explanation_lines(record.explanation) if record.explanation else []
        message = "\n".join([f"{record.model} ({variant_id}): {record.verdict['reason']}", *why])
        raise PerformanceRegression(message)
