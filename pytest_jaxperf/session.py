"""The registered plugin object: gathers the records of every test (xdist-aware) and writes them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest
    from _pytest.terminal import TerminalReporter

    from .records import Record
    from .settings import PluginConfig

PLUGIN_NAME = "jaxperf-session"


class JaxperfSession:
    """Session state: the settings and the records gathered from test reports.

    Records ride on ``report.user_properties``, so under xdist the workers' records reach the
    controller with their reports; only the controller writes files.
    """

    def __init__(self, settings: PluginConfig, is_worker: bool) -> None:
        self.settings = settings
        self.is_worker = is_worker
        self.records: list[Record] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # Every phase's report carries the item's user_properties; the teardown report is the last.
        if report.when != "teardown" or not report.user_properties:
            return
        from .records import USER_PROPERTY, record_from_dict

        for key, value in report.user_properties:
            if key == USER_PROPERTY and isinstance(value, list):
                self.records.extend(record_from_dict(entry) for entry in value)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.is_worker or self.settings.json_path is None:
            return
        import json

        from .environment import describe_environment
        from .report import results_json

        document = results_json(self.records, describe_environment())
        write_atomically(self.settings.json_path, json.dumps(document, indent=2, sort_keys=True) + "\n")

    def pytest_terminal_summary(self, terminalreporter: TerminalReporter) -> None:
        if self.is_worker or not self.settings.measure:
            return
        from .report import summary_lines

        terminalreporter.write_sep("=", "jaxperf")
        for line in summary_lines(self.records):
            terminalreporter.write_line(line)
        if self.settings.json_path is not None:
            terminalreporter.write_line(f"jaxperf: results written to {self.settings.json_path}")


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: readers never see half a file."""
    import os
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
