"""The registered plugin object: gathers the records of every test (xdist-aware), writes what was asked.

Records ride on ``report.user_properties``, so under xdist the workers' records reach the controller with
their reports; only the controller writes files (results, reports, baselines).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    import pytest
    from _pytest.terminal import TerminalReporter

    from .baseline import BaselineStore
    from .records import CheckRecord, Record
    from .settings import PluginConfig

PLUGIN_NAME = "jaxperf-session"
#: Set in the extra processes that measure the noise floor, so that they never record baselines.
REPEAT_CHILD_ENV = "JAXPERF_REPEAT_CHILD"


class JaxperfSession:
    """Session state: the settings, the baseline store and the records gathered from test reports."""

    def __init__(
        self, settings: PluginConfig, is_worker: bool, invocation_args: tuple[str, ...] = ()
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
        from .baseline import BaselineError, baseline_record
        from .records import CheckRecord
        from .verdicts import noise_floor, noise_floor_of_run

        measured = [r for r in self.records if isinstance(r, CheckRecord) and r.timing is not None]
        if not measured:
            self.messages.append("jaxperf: nothing was measured, so no baseline was written")
            return True
        repeats = self._repeat_medians(measured)
        commit = _git_commit(self.settings.rootdir)
        medians = {
            id(record): [record.timing["median"], *repeats.get((record.module, record.baseline_key), [])]
            for record in measured
            if record.timing
        }
        store = self.baseline_store()
        recordings: dict[int, int] = {}
        if self.settings.extend_baselines:
            measured, recordings = self._extend(measured, medians, store)
        # Most of the spread between processes is the machine's, common to every measurement: a floor
        # taken from one measurement's three processes can come out small by chance. Each baseline keeps
        # the larger of its own spread and the median spread of the whole recording.
        machine_noise = noise_floor_of_run([noise_floor(medians[id(r)]) for r in measured])
        by_module: dict[str, dict[str, dict[str, Any]]] = {}
        for record in measured:
            own = noise_floor(medians[id(record)])
            by_module.setdefault(record.module, {})[record.baseline_key] = baseline_record(
                record, medians[id(record)], max(own, machine_noise), commit, recordings.get(id(record), 1)
            )
        ok = True
        for module, records in sorted(by_module.items()):
            try:
                path = store.write(module, records)
            except BaselineError as error:
                self.messages.append(f"jaxperf: {error}")
                ok = False
                continue
            self.messages.append(f"jaxperf: {len(records)} baseline(s) written to {path}")
        return ok

    def _extend(
        self, measured: list[CheckRecord], medians: dict[int, list[float]], store: BaselineStore
    ) -> tuple[list[CheckRecord], dict[int, int]]:
        """--jaxperf-extend-baselines: each stored baseline's process medians joined to this recording's
        (``medians`` updated in place); what stays out, and why, goes to the messages."""
        from .baseline import BaselineError, ProgramChanged, extended_medians

        kept: list[CheckRecord] = []
        recordings: dict[int, int] = {}
        for record in measured:
            name = f"{record.module}::{record.baseline_key}"
            try:
                lookup = store.lookup(record.module, record.baseline_key)
            except BaselineError:
                lookup = None  # a corrupt file: reported when it is written, and left as it is
            if lookup is not None and lookup.record is not None:
                try:
                    medians[id(record)] = extended_medians(
                        lookup.record, record.gate_fields(), medians[id(record)]
                    )
                except ProgramChanged as error:
                    self.messages.append(
                        f"jaxperf: {name} not extended: {error}; it keeps its baseline "
                        "(--jaxperf-update-baselines records it anew)"
                    )
                    continue
                recordings[id(record)] = int(lookup.record.get("recordings") or 1) + 1
            kept.append(record)
        self.messages.append(
            f"jaxperf: {len(recordings)} baseline(s) extended with this recording's processes, "
            f"{len(kept) - len(recordings)} recorded anew"
        )
        return kept, recordings

    def _repeat_medians(self, measured: list[CheckRecord]) -> dict[tuple[str, str], list[float]]:
        """Medians from ``repeat - 1`` extra processes running the same tests: the noise floor's data."""
        if self.settings.repeat <= 1 or os.environ.get(REPEAT_CHILD_ENV):
            return {}
        import subprocess
        import sys
        import tempfile
        from pathlib import Path

        from .environment import child_process_environment
        from .results import load_results

        nodeids = sorted({r.nodeid for r in measured})
        medians: dict[tuple[str, str], list[float]] = {}
        with tempfile.TemporaryDirectory(prefix="jaxperf-repeat-") as scratch:
            for index in range(self.settings.repeat - 1):
                results = Path(scratch, f"run{index}.json")
                command = [
                    sys.executable, "-m", "pytest", "--jaxperf", f"--jaxperf-json={results}",
                    f"--jaxperf-baselines={self.settings.baselines_dir}", "-p", "no:cacheprovider", "-q",
                    *_forwarded_options(self.invocation_args), *nodeids,
                ]  # fmt: skip
                env = child_process_environment(**{REPEAT_CHILD_ENV: "1"})
                subprocess.run(command, cwd=self.settings.rootdir, env=env, capture_output=True, check=False)
                if not results.exists():
                    self.messages.append(f"jaxperf: noise-floor run {index + 2} wrote no results; skipped")
                    continue
                for record in load_results(results).measured.values():
                    key = (record.module, record.baseline_key)
                    medians.setdefault(key, []).append((record.timing or {})["median"])
        self.messages.append(
            f"jaxperf: noise floor from {self.settings.repeat} processes (this one and "
            f"{self.settings.repeat - 1} more)"
        )
        return medians


#: Options worth passing on to the noise-floor processes (the measurement settings).
_FORWARDED = ("--jaxperf-budget", "--jaxperf-threshold", "--jaxperf-mode", "-p", "-c", "--rootdir")


def _forwarded_options(args: tuple[str, ...]) -> list[str]:
    forwarded: list[str] = []
    iterator = iter(args)
    for arg in iterator:
        name = arg.split("=", 1)[0]
        if name in _FORWARDED:
            forwarded.append(arg)
            if "=" not in arg and name in _FORWARDED:
                following = next(iterator, None)
                if following is not None:
                    forwarded.append(following)
    return forwarded


def _git_commit(directory: Path) -> str:
    import subprocess

    try:
        result = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=directory,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return "unknown"
    return result.stdout.strip() or "unknown"
