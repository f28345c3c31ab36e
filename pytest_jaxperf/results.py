"""A run's results: written (``--jaxperf-json``, and pytest-benchmark's JSON) and read back by the reports,
with the baselines committed over git history.

Nothing else is read: no jax, no test code. Both readers say which file is wrong and why, and change nothing.
"""

from __future__ import annotations

import datetime
import json
import platform
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .baseline import parse_file
from .errors import BaselineError
from .processes import git_output
from .record_fields import (
    count_problem,
    figure_problem,
    first_problem,
    is_non_negative_number,
    median_problem,
    seconds_list_problem,
)
from .records import CheckRecord, Record, record_from_dict
from .verdicts import TEST_FAILED

if TYPE_CHECKING:
    from collections.abc import Sequence

#: The results file's schema: a reader refuses another.
JSON_SCHEMA_VERSION = 1


class ResultsError(Exception):
    """A results file that cannot be read: missing, not JSON, of another schema, or malformed."""


@dataclass(frozen=True)
class Results:
    """One run's records, as written by ``--jaxperf-json``."""

    path: Path
    environment: str
    records: tuple[Record, ...]

    @property
    def checks(self) -> tuple[CheckRecord, ...]:
        return tuple(r for r in self.records if isinstance(r, CheckRecord))

    @property
    def measured(self) -> dict[tuple[str, str], CheckRecord]:
        """The timed checks by (test id, measurement key): what two runs are compared on."""
        return {
            (c.nodeid, c.key): c
            for c in self.checks
            if c.timing and c.timing.get("median") and not (c.verdict and c.verdict["status"] == TEST_FAILED)
        }


def results_json(records: Sequence[Record], environment: str) -> dict[str, Any]:
    """Everything recorded, samples included, as one JSON-ready document."""
    return {
        "schema_version": JSON_SCHEMA_VERSION,
        "environment": environment,
        "records": [r.to_dict() for r in records],
    }


def benchmark_json(records: Sequence[Record], environment: str) -> dict[str, Any]:
    """The measured checks in pytest-benchmark's JSON format (its ``compare`` command reads it)."""
    benchmarks = []
    for record in records:
        if not isinstance(record, CheckRecord) or not record.timing:
            continue
        data = list(record.timing["samples"])
        ordered = sorted(data)
        q1, q3 = (
            (statistics.quantiles(ordered, n=4)[0], statistics.quantiles(ordered, n=4)[2])
            if len(ordered) > 1
            else (ordered[0], ordered[0])
        )
        mean = statistics.fmean(data)
        stddev = statistics.stdev(data) if len(data) > 1 else 0.0
        iqr = q3 - q1
        name = record.nodeid.split("::", 1)[-1]
        benchmarks.append(
            {
                "group": record.variant,
                "name": f"{name}::{record.key}",
                "fullname": f"{record.nodeid}::{record.key}",
                "params": None,
                "param": None,
                "extra_info": {
                    "jaxperf_mode": record.timing["mode"],
                    "items_per_call": record.timing["items_per_call"],
                    "verdict": record.verdict.get("status") if record.verdict else None,
                    "metrics": record.metrics,
                },
                "options": {"timer": "perf_counter", "blocked_on_output": True, "warmup": True},
                "stats": {
                    "min": ordered[0],
                    "max": ordered[-1],
                    "mean": mean,
                    "stddev": stddev,
                    "rounds": len(data),
                    "median": record.timing["median"],
                    "iqr": iqr,
                    "q1": q1,
                    "q3": q3,
                    "iqr_outliers": sum(1 for x in data if x < q1 - 1.5 * iqr or x > q3 + 1.5 * iqr),
                    "stddev_outliers": sum(1 for x in data if abs(x - mean) > stddev),
                    "outliers": "0;0",
                    "ld15iqr": min((x for x in ordered if x >= q1 - 1.5 * iqr), default=ordered[0]),
                    "hd15iqr": max((x for x in ordered if x <= q3 + 1.5 * iqr), default=ordered[-1]),
                    "ops": 1 / mean if mean else 0.0,
                    "total": sum(data),
                    "data": data,
                    "iterations": record.timing["calls_per_sample"],
                },
            }
        )
    return {
        "machine_info": {
            "node": platform.node(),
            "processor": platform.processor(),
            "machine": platform.machine(),
            "python_implementation": platform.python_implementation(),
            "python_version": platform.python_version(),
            "system": platform.system(),
            "release": platform.release(),
            "jaxperf_environment": environment,
        },
        "commit_info": {"id": "unknown", "dirty": False, "project": "", "branch": "(unknown)"},
        "benchmarks": benchmarks,
        "datetime": datetime.datetime.now(datetime.UTC).isoformat(),
        "version": "5.1.0",
    }


def load_results(path: Path) -> Results:
    """Read a ``--jaxperf-json`` file; ResultsError names the file and what is wrong with it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ResultsError(
            f"{path}: no such results file (write one with pytest --jaxperf-json={path})"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ResultsError(f"{path}: cannot be read ({error})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ResultsError(f"{path}: not JSON, or cut short ({error})") from None
    if not isinstance(data, dict) or not isinstance(data.get("records"), list):
        raise ResultsError(
            f"{path}: not a jaxperf results file (no 'records' list); write one with --jaxperf-json"
        )
    if data.get("schema_version") != JSON_SCHEMA_VERSION:
        raise ResultsError(
            f"{path}: schema version {data.get('schema_version')!r}; this pytest-jaxperf reads version "
            f"{JSON_SCHEMA_VERSION}"
        )
    records = []
    for index, entry in enumerate(data["records"]):
        try:
            record = record_from_dict(entry)
        except (TypeError, KeyError, AttributeError, ValueError) as error:
            raise ResultsError(f"{path}: record {index} is malformed ({error})") from None
        if isinstance(record, CheckRecord):
            problem = timing_problem(record.timing)
            problem = f"its timing {problem}" if problem else explanation_problem(record.explanation)
            if problem is None and record.trace is not None and not isinstance(record.trace, str):
                problem = f"its trace is {record.trace!r:.40}, not a folder's path"
            if problem:
                raise ResultsError(f"{path}: record {index} ({record.nodeid} {record.key}): {problem}")
        records.append(record)
    return Results(path, str(data.get("environment", "")), tuple(records))


#: A timing's fields that are finite numbers of at least zero, and those that are positive counts; the
#: reports read those required.
_TIMING_FIGURES = ("ci_low", "ci_high", "p90", "p99", "throughput", "seconds_spent")
_TIMING_COUNTS = ("sample_count", "calls_per_sample", "items_per_call")
_TIMING_REQUIRED = ("median", "samples", "ci_low", "ci_high", "throughput", "items_per_call")


def timing_problem(timing: Any) -> str | None:
    """What makes a check's timing no measurement (``has a median of nan``); None for none or a good one:
    a finite positive median and samples, finite figures, positive counts. Nothing is compared otherwise."""
    if timing is None:
        return None
    if not isinstance(timing, dict):
        return f"is {timing!r:.40}, not an object of fields"
    missing = next((name for name in _TIMING_REQUIRED if name not in timing), None)
    if missing:
        return f"has no {missing}"
    return first_problem(
        median_problem(timing["median"], _shown),
        seconds_list_problem("samples", timing["samples"], _shown),
        *(figure_problem(name, timing[name], _shown) for name in _TIMING_FIGURES if name in timing),
        *(count_problem(name, timing.get(name, 1), _shown, positive=True) for name in _TIMING_COUNTS),
    )


def _shown(value: Any) -> str:
    return f"{value!r:.40}"


#: Each part of an explanation the reports read, and what its entries must hold.
_CHANGE_FIELDS = {"kind": str, "description": str, "baseline": int, "current": int, "bytes": int}
_OP_FIELDS = {"op": str, "description": str}
_OP_SECONDS = ("baseline_seconds", "current_seconds")
_EXPLANATION_TEXTS = ("headline", "no_program", "no_time_breakdown")


def explanation_problem(explanation: Any) -> str | None:
    """What makes a check's explanation unreadable to the reports (``its explanation's program_changes[2]
    has no bytes``); None for none or a good one."""
    if explanation is None:
        return None
    if not isinstance(explanation, dict):
        return f"its explanation is {explanation!r:.40}, not an object of fields"
    for name in _EXPLANATION_TEXTS:
        if name in explanation and not isinstance(explanation[name], str):
            return f"its explanation's {name} is {explanation[name]!r:.40}, not text"
    if "seconds" in explanation and not is_non_negative_number(explanation["seconds"]):
        return f"its explanation's seconds is {explanation['seconds']!r:.40}, not a number of at least 0"
    for part, fields in (("program_changes", _CHANGE_FIELDS), ("op_times", _OP_FIELDS)):
        entries = explanation.get(part, [])
        if not isinstance(entries, list):
            return f"its explanation's {part} is {entries!r:.40}, not a list"
        for position, entry in enumerate(entries):
            where = f"its explanation's {part}[{position}]"
            if not isinstance(entry, dict):
                return f"{where} is {entry!r:.40}, not an object of fields"
            for name, kind in fields.items():
                if not isinstance(entry.get(name), kind) or isinstance(entry.get(name), bool):
                    return f"{where} has {name} {entry.get(name)!r:.40}, not {kind.__name__}"
            if part == "op_times":
                for name in _OP_SECONDS:
                    if not is_non_negative_number(entry.get(name)):
                        return f"{where} has {name} {entry.get(name)!r:.40}, not a number of at least 0"
                share = entry.get("share")
                if share is not None and not is_non_negative_number(share):
                    return f"{where} has share {share!r:.40}, not a fraction or null"
    return None


@dataclass(frozen=True)
class HistoryPoint:
    """One benchmark's baseline as recorded at one time."""

    environment: str
    """The baselines' environment folder, e.g. ``cpu-cpu-x8-e424bcbc``."""
    module: str
    key: str
    """The record's name in its module's file: ``test_x[bf16]::Decoder``."""
    date: str
    commit: str
    """The commit the baseline was recorded at (its own ``commit`` field), not the one that stored it."""
    median: float
    items_per_call: int

    @property
    def throughput(self) -> float:
        return self.items_per_call / self.median

    @property
    def benchmark(self) -> tuple[str, str, str]:
        return (self.environment, self.module, self.key)


@dataclass(frozen=True)
class History:
    """Every distinct baseline of every benchmark under a baselines folder, across its git history."""

    points: tuple[HistoryPoint, ...]
    revisions: int
    """How many git revisions of the folder were read (0 outside a git repository)."""
    problems: tuple[str, ...]
    """Files that could not be read, each with its reason: reported, not fatal."""

    def series(self) -> dict[tuple[str, str, str], list[HistoryPoint]]:
        """Points per benchmark, oldest first."""
        grouped: dict[tuple[str, str, str], list[HistoryPoint]] = {}
        for point in self.points:
            grouped.setdefault(point.benchmark, []).append(point)
        for points in grouped.values():
            points.sort(key=lambda p: (p.date, p.commit))
        return grouped


def baseline_history(baselines: Path) -> History:
    """The baselines committed in git under ``baselines`` (every revision that touched it), plus the files
    as they are now; each distinct recording of a benchmark is one point."""
    documents: list[tuple[str, str]] = []  # (label, text)
    revisions = 0
    top = git_output(baselines, "rev-parse", "--show-toplevel") if baselines.is_dir() else None
    if top is not None:
        root = Path(top.strip())
        relative = baselines.resolve().relative_to(root.resolve()).as_posix()
        log = git_output(root, "log", "--format=%H", "--", relative) or ""
        read: set[str] = set()
        for commit in log.split():
            revisions += 1
            listing = git_output(root, "ls-tree", "-r", commit, "--", relative) or ""
            for entry in listing.splitlines():
                # "<mode> blob <object id>\t<path>": a file unchanged since a later revision is the same
                # object, read once.
                info, _, name = entry.partition("\t")
                blob = info.split()[-1] if info else ""
                if name.endswith(".json") and blob not in read:
                    read.add(blob)
                    text = git_output(root, "cat-file", "blob", blob)
                    if text is not None:
                        documents.append((f"{name} at {commit[:12]}", text))
    if baselines.is_dir():
        for path in sorted(baselines.glob("*/*.json")):
            try:
                documents.append((str(path), path.read_text(encoding="utf-8")))
            except (OSError, UnicodeDecodeError) as error:
                documents.append((str(path), f"unreadable: {error}"))
    seen: set[tuple[Any, ...]] = set()
    points: list[HistoryPoint] = []
    problems: list[str] = []
    for label, text in documents:
        try:
            document = parse_file(text, Path(label))
        except BaselineError as error:
            if str(error) not in problems:
                problems.append(str(error))
            continue
        environment = Path(label.split(" at ")[0]).parent.name
        for key, record in document.records.items():
            median = record.get("median") if isinstance(record, dict) else None
            if not isinstance(median, int | float) or median <= 0:
                continue
            point = HistoryPoint(
                environment,
                document.module,
                key,
                str(record.get("date", "")),
                str(record.get("commit", "")),
                float(median),
                int(record.get("items_per_call") or 1),
            )
            identity = (point.benchmark, point.date, point.commit, point.median)
            if identity not in seen:
                seen.add(identity)
                points.append(point)
    return History(tuple(points), revisions, tuple(problems))
