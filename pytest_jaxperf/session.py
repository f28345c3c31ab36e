"""The registered plugin object: gathers the records of every test (xdist-aware), writes what was asked.

Records ride on ``report.user_properties``, so under xdist the workers' records reach the controller with
their reports; only the controller writes files (results, reports, baselines).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest
    from _pytest.terminal import TerminalReporter

    from .baseline import BaselineStore
    from .records import Record
    from .settings import PluginSettings

PLUGIN_NAME = "jaxperf-session"


class JaxperfSession:
    """Session state: the settings, the baseline store and the records gathered from test reports."""

    def __init__(
        self, settings: PluginSettings, is_worker: bool, invocation_args: tuple[str, ...] = ()
    ) -> None:
        self.settings = settings
        self.is_worker = is_worker
        self.invocation_args = invocation_args
        self.records: list[Record] = []
        self.messages: list[str] = []
        self._store: BaselineStore | None = None

    def baseline_store(self) -> BaselineStore:
        """The store of this environment's baselines (computing the fingerprint imports jax)."""
        if self._store is None:
            from .baseline import BaselineStore, environment_fingerprint

            self._store = BaselineStore(self.settings.baselines_dir, environment_fingerprint())
        return self._store

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # Every phase's report carries the item's user_properties; the teardown report is the last.
        if report.when != "teardown" or not report.user_properties:
            return
        from .records import USER_PROPERTY, record_from_dict

        for key, value in report.user_properties:
            if key == USER_PROPERTY and isinstance(value, list):
                self.records.extend(record_from_dict(entry) for entry in value)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.is_worker:
            return
        import pytest

        if self.settings.update_baselines:
            if exitstatus == pytest.ExitCode.INTERRUPTED:
                self.messages.append("jaxperf: the run was interrupted; no baseline was written")
            elif not self._write_baselines():
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
        self._write_reports()

    def pytest_terminal_summary(self, terminalreporter: TerminalReporter) -> None:
        if self.is_worker or not self.settings.measure:
            return
        from .report import summary_lines, verdict_counts

        terminalreporter.write_sep("=", "jaxperf")
        # -qq and quieter: one line of counts instead of the table.
        quiet = terminalreporter.config.get_verbosity() < -1
        for line in [verdict_counts(self.records)] if quiet else summary_lines(self.records):
            terminalreporter.write_line(line)
        for message in self.messages:
            terminalreporter.write_line(message)

    # --- files --------------------------------------------------------------------------------------

    def _write_reports(self) -> None:
        settings = self.settings
        if settings.json_path is None and settings.benchmark_json_path is None and not settings.measure:
            return  # a plain run: nothing to write, and nothing more to import at its end
        import json

        from .baseline import write_atomically
        from .environment import describe_environment
        from .report import benchmark_json, markdown_summary, results_json

        if settings.json_path is not None:
            document = results_json(self.records, describe_environment())
            write_atomically(settings.json_path, json.dumps(document, indent=2, sort_keys=True) + "\n")
            self.messages.append(f"jaxperf: results written to {settings.json_path}")
        if settings.benchmark_json_path is not None:
            document = benchmark_json(self.records, describe_environment())
            write_atomically(settings.benchmark_json_path, json.dumps(document, indent=2) + "\n")
            self.messages.append(f"jaxperf: pytest-benchmark JSON written to {settings.benchmark_json_path}")
        if settings.measure:
            markdown = markdown_summary(self.records)
            if settings.markdown_path is not None:
                write_atomically(settings.markdown_path, markdown)
            step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
            if step_summary:
                with open(step_summary, "a", encoding="utf-8") as stream:
                    stream.write(markdown)

    def _write_baselines(self) -> bool:
        """Record the measured checks as baselines; False when a file could not be written."""
        from .recording import write_baselines

        return write_baselines(
            self.records, self.settings, self.baseline_store, self.invocation_args, self.messages
        )
