"""The pytest plugin each side's process of ``jaxperf ab`` loads to report its tests' outcomes.

Each side runs its own revision's code, jaxperf included: the base may have an older jaxperf, or none. So
this plugin imports nothing from pytest_jaxperf, only the standard library (pytest's types only for the
type checker), and it is not imported from the package in the child: the driver copies this file into its
scratch folder as ``jaxperf_ab_outcomes.py``, puts that folder on PYTHONPATH and loads it with
``-p jaxperf_ab_outcomes``. At the end of the session it writes to the file named by ``JAXPERF_AB_OUTCOMES``:
``{"exitstatus": int, "outcomes": {test id: [outcome, message]}}``, the outcome one of passed, failed,
error or skipped, the message the first line of the failure or of the skip's reason.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest

#: The environment variable naming the file the outcomes are written to.
OUTCOMES_ENV = "JAXPERF_AB_OUTCOMES"

_outcomes: dict[str, tuple[str, str]] = {}


def pytest_collectreport(report: pytest.CollectReport) -> None:
    """A module that fails to collect is an error of its own (or of ``<collection>``)."""
    if report.failed:
        _outcomes[report.nodeid or "<collection>"] = ("error", _message(report))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """A test's outcome over its phases: a failure in any phase beats a pass or a skip, and a failed call
    is kept over a later teardown error."""
    seen = _outcomes.get(report.nodeid)
    if report.failed:
        if seen is None or seen[0] != "failed":
            _outcomes[report.nodeid] = ("failed" if report.when == "call" else "error", _message(report))
    elif report.skipped and seen is None:
        _outcomes[report.nodeid] = ("skipped", _message(report))
    elif report.when == "call" and seen is None:
        _outcomes[report.nodeid] = ("passed", "")


def _message(report: pytest.CollectReport | pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        message: str = crash.message
        return message.splitlines()[0][:300] if message else ""
    if isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:
        return str(report.longrepr[2])[:300]
    return str(report.longrepr or "").strip().splitlines()[-1][:300] if report.longrepr else ""


def pytest_sessionfinish(session: pytest.Session, exitstatus: int | pytest.ExitCode) -> None:
    """Write the outcomes, with pytest's exit status, where the driver reads them."""
    path = os.environ.get(OUTCOMES_ENV)
    if path:
        with open(path, "w", encoding="utf-8") as stream:
            json.dump({"exitstatus": int(exitstatus), "outcomes": _outcomes}, stream)
