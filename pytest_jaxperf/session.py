"""The registered plugin object: gathers the records of every test (xdist-aware), writes what was asked.

Records ride on ``report.user_properties``, so under xdist the workers' records reach the controller with
their reports; only the controller writes files (results, reports, baselines).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

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
        self._failed: set[str] = set()

    def baseline_store(self) -> BaselineStore:
        """The store of this environment's baselines (computing the fingerprint imports jax)."""
        if self._store is None:
            from .baseline import BaselineStore, environment_fingerprint

            self._store = BaselineStore(self.settings.baselines_dir, environment_fingerprint())
        return self._store

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed:
            self._failed.add(report.nodeid)
        # Every phase's report carries the item's user_properties; the teardown report is the last.
        if report.when != "teardown" or not report.user_properties:
            return
        from .records import USER_PROPERTY, CheckRecord, record_from_dict
        from .verdicts import of_failed_test

        failed = report.nodeid in self._failed
        for key, value in report.user_properties:
            if key == USER_PROPERTY and isinstance(value, list):
                for entry in value:
                    record = record_from_dict(entry)
                    # A failed test's measurements are kept for the reports, marked: never a result.
                    if failed and isinstance(record, CheckRecord):
                        record = of_failed_test(record, recording=self.settings.update_baselines)
                    self.records.append(record)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.is_worker:
            return
        import pytest

        if self.settings.update_baselines:
            from .recording import RecordingInterrupted

            if exitstatus == pytest.ExitCode.INTERRUPTED:
                self.messages.append("jaxperf: the run was interrupted; no baseline was written")
            else:
                try:
                    if not self._write_baselines():
                        session.exitstatus = pytest.ExitCode.TESTS_FAILED
                except RecordingInterrupted as interruption:
                    self.messages.append(str(interruption))
                    session.exitstatus = pytest.ExitCode.INTERRUPTED
        if not self._write_reports():
            session.exitstatus = session.exitstatus or pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: TerminalReporter) -> None:
        if self.is_worker:
            return
        if not self.settings.measure:
            for message in self.messages:  # a file asked for that could not be written
                terminalreporter.write_line(message)
            return
        from .report import summary_lines
        from .rows import verdict_counts

        terminalreporter.write_sep("=", "jaxperf")
        # -qq and quieter: one line of counts instead of the table.
        quiet = terminalreporter.config.get_verbosity() < -1
        if not quiet:
            for line in summary_lines(self.records):
                terminalreporter.write_line(line)
        for message in self.messages:
            terminalreporter.write_line(message)
        terminalreporter.write_line(verdict_counts(self.records))  # the last word: one line of counts

    # --- files --------------------------------------------------------------------------------------

    def _write_reports(self) -> bool:
        """Write the files asked for; False when one could not be written (each said, the rest written)."""
        settings = self.settings
        if settings.json_path is None and settings.benchmark_json_path is None and not settings.measure:
            return True  # a plain run: nothing to write, and nothing more to import at its end
        import json

        from .environment import describe_environment
        from .report import markdown_summary
        from .results import benchmark_json, results_json

        written = True
        if settings.json_path is not None:
            document = results_json(self.records, describe_environment())
            text = json.dumps(document, indent=2, sort_keys=True) + "\n"
            written &= self._written("results", settings.json_path, text)
        if settings.benchmark_json_path is not None:
            document = benchmark_json(self.records, describe_environment())
            text = json.dumps(document, indent=2) + "\n"
            written &= self._written("pytest-benchmark JSON", settings.benchmark_json_path, text)
        if settings.measure:
            markdown = markdown_summary(self.records)
            if settings.markdown_path is not None:
                written &= self._written("Markdown summary", settings.markdown_path, markdown, said=False)
            step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
            if step_summary:
                try:
                    with open(step_summary, "a", encoding="utf-8") as stream:
                        stream.write(markdown)
                except OSError as error:
                    self.messages.append(f"jaxperf: GITHUB_STEP_SUMMARY {step_summary} NOT written: {error}")
                    written = False
        return written

    def _written(self, what: str, path: Path, text: str, *, said: bool = True) -> bool:
        """Write ``text`` to ``path``; False, said in the messages, where it could not be written. With
        ``said``, the written file is named there too."""
        from .writable import write_atomically

        try:
            write_atomically(path, text)
        except OSError as error:
            self.messages.append(f"jaxperf: {what} NOT written to {path}: {error.strerror or error}")
            return False
        if said:
            self.messages.append(f"jaxperf: {what} written to {path}")
        return True

    def _write_baselines(self) -> bool:
        """Record the measured checks as baselines; False when a file could not be written."""
        from .recording import write_baselines

        return write_baselines(
            self.records, self.settings, self.baseline_store, self.invocation_args, self.messages
        )
