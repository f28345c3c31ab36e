"""The exceptions a test fails with, raised by the rooms below the fixture.

The optimizations, the checks and the gate know nothing of pytest: a judgement that fails raises
:class:`CaseFailed`, a case that cannot run on this machine raises :class:`CaseUnavailable`, and the
fixture fails or skips the test with the case's name before the message (``jaxperf bf16-d8: ...``).
A regression against the committed baseline reaches pytest as itself: :class:`PerformanceRegression`;
a baseline file that cannot be used fails the test naming the file: :class:`BaselineError`.
"""

from __future__ import annotations


def first_line(error: BaseException) -> str:
    """``TypeName: first line of the message`` (at most 300 characters of it): an error from below
    (jax, XLA) named in one line of the plugin's own message."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0][:300] if text else ''}"


class CaseFailed(AssertionError):
    """A check of the test case failed; the message says what was expected and what was found."""


class CaseUnavailable(Exception):
    """The test case cannot run here (a platform, a device count, a precision this backend lacks)."""


class PerformanceRegression(AssertionError):
    """A measurement regressed against its committed baseline."""


class IdenticalInputsWarning(UserWarning):
    """Every input the fidelity check generated was the same one: it compared the variant once."""


class LowPrecisionReferenceWarning(UserWarning):
    """The model's float32 case computes matmuls in a lower precision (layers built with a bf16 dtype):
    the fidelity check compares the variants with that model, not with float32."""


class BaselineError(Exception):
    """A baseline file that cannot be used: unreadable, corrupt or of another schema."""
