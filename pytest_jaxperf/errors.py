"""The exceptions a test fails with, raised by the rooms below the fixture.

The optimizations, the checks and the gate know nothing of pytest: a judgement that fails raises
:class:`CaseFailed`, a case that cannot run on this machine raises :class:`CaseUnavailable`, and the
fixture fails or skips the test with the case's name before the message (``jaxperf bf16-d8: ...``).
A regression against the committed baseline reaches pytest as itself: :class:`PerformanceRegression`.
"""

from __future__ import annotations


class CaseFailed(AssertionError):
    """A check of the test case failed; the message says what was expected and what was found."""


class CaseUnavailable(Exception):
    """The test case cannot run here (a platform, a device count, a precision this backend lacks)."""


class PerformanceRegression(AssertionError):
    """A measurement regressed against its committed baseline."""
