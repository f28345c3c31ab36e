"""Recording baselines: the measured checks of a session, the noise floor from extra processes running
the same tests, what a baseline keeps of a measured check, extending stored baselines (the same program
only), and writing them to the store.

Only the session's controller records (never an xdist worker, never a noise-floor process), and only on
request (``--jaxperf-update-baselines``, ``--jaxperf-extend-baselines``).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import statistics
from typing import TYPE_CHECKING, Any

import numpy as np

from .environment import child_process_environment
from .errors import BaselineError
from .noise import noise_floor, noise_floor_of_run
from .processes import head_commit, run_pytest, scratch_directory
from .records import CheckRecord, program_stored
from .results import ResultsError, load_results
from .signals import interrupts_deferred
from .units import format_bytes
from .verdicts import NOISE_MULTIPLE, TEST_FAILED, deterministic_changes

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from .baseline import BaselineStore
    from .records import Record
    from .settings import PluginSettings

#: Set in the extra processes that measure the noise floor, so that they never record baselines.
REPEAT_CHILD_ENV = "JAXPERF_REPEAT_CHILD"
#: Options worth passing on to the noise-floor processes (the measurement settings).
_FORWARDED = (
    "--jaxperf-budget", "--jaxperf-threshold", "--jaxperf-replay-threshold", "--jaxperf-mode", "-p", "-c",
    "--rootdir",
)  # fmt: skip


def write_baselines(
    records: list[Record],
    settings: PluginSettings,
    baseline_store: Callable[[], BaselineStore],
    invocation_args: tuple[str, ...],
    messages: list[str],
) -> bool:
    """Record the measured checks as baselines; False when a file could not be written. What was
    written, extended or refused goes to ``messages``."""
    timed = [r for r in records if isinstance(r, CheckRecord) and r.timing is not None]
    measured = [r for r in timed if not r.verdict or r.verdict["status"] != TEST_FAILED]
    if len(measured) < len(timed):
        failed = sorted({r.nodeid for r in timed} - {r.nodeid for r in measured})
        messages.append(
            f"jaxperf: {len(timed) - len(measured)} measurement(s) of failed tests not recorded: "
            + ", ".join(failed)
        )
    if not measured:
        messages.append("jaxperf: nothing was measured, so no baseline was written")
        return True
    repeats = repeat_medians(measured, settings, invocation_args, messages)
    commit = head_commit(settings.rootdir)
    medians = {
        id(record): [record.timing["median"], *repeats.get((record.module, record.baseline_key), [])]
        for record in measured
        if record.timing
    }
    store = baseline_store()  # the environment's fingerprint imports jax: only once something was measured
    recordings: dict[int, int] = {}
    if settings.extend_baselines:
        measured, recordings = _extend(measured, medians, store, messages)
    # Most of the spread between processes is the machine's, common to every measurement: a floor
    # taken from one measurement's three processes can come out small by chance. Each baseline keeps
    # the larger of its own spread and the median spread of the whole recording.
    machine_noise = noise_floor_of_run([noise_floor(medians[id(r)]) for r in measured])
    by_module: dict[str, dict[str, dict[str, Any]]] = {}
    refused = 0
    for record in measured:
        floor = max(noise_floor(medians[id(record)]), machine_noise)
        seen = limit_line(record, floor, len(medians[id(record)]), settings)
        if seen is not None:
            line, refuse = seen
            messages.append(line)
            if refuse:
                refused += 1
                continue
        by_module.setdefault(record.module, {})[record.baseline_key] = baseline_record(
            record, medians[id(record)], floor, commit, recordings.get(id(record), 1)
        )
    messages.extend(program_lines(measured))
    ok = refused == 0
    # Ctrl-C waits for the loop: each file is written whole, and a recording half old, half new (with no
    # word of which) would be worse than a second's wait.
    try:
        with interrupts_deferred():
            for module, module_records in sorted(by_module.items()):
                ok &= _written(store, module, module_records, messages)
    except KeyboardInterrupt:
        raise RecordingInterrupted(
            "jaxperf: interrupted while writing baselines; the writing was finished first (the files "
            "listed above were written whole)"
        ) from None
    return ok


def _written(
    store: BaselineStore, module: str, records: dict[str, dict[str, Any]], messages: list[str]
) -> bool:
    """Write one module's baselines; False, said in ``messages``, where the file could not be written."""
    try:
        path = store.write(module, records)
    except BaselineError as error:
        messages.append(f"jaxperf: {error}")
        return False
    except OSError as error:  # a full disk, a read-only folder, a path through a file
        messages.append(
            f"jaxperf: {len(records)} baseline(s) of {module} NOT written to {store.path_for(module)}: "
            f"{error.strerror or error}; the file is as it was"
        )
        return False
    messages.append(f"jaxperf: {len(records)} baseline(s) written to {path}")
    return True


class RecordingInterrupted(Exception):
    """Ctrl-C while recording; the message says what was and was not written."""


def limit_line(
    record: CheckRecord, floor: float, processes: int, settings: PluginSettings
) -> tuple[str, bool] | None:
    """Where the baseline's cross-process limit exceeds twice the threshold: the line saying what it can
    see, and whether it is refused (beyond the ceiling, no program to replay, not allowed)."""
    threshold = record.threshold or settings.threshold  # its @jaxperf.gate's where it has one
    limit = max(threshold, NOISE_MULTIPLE * floor)
    if limit <= 2 * threshold:
        return None
    name = f"{record.module}::{record.baseline_key}"
    replayable = program_stored(record.program)
    line = (
        f"jaxperf: {name} can only catch slowdowns beyond +{limit:.0%} by its recorded times: its "
        f"{processes} recording processes spread {floor:.0%} (recorded on a busy machine?)"
    )
    if replayable:
        return f"{line}; its program is stored, and replaying it decides the timing", False
    if limit > settings.limit_ceiling and not settings.allow_wide_limits:
        return (
            f"{line}; not recorded: beyond the ceiling of +{settings.limit_ceiling:.0%} "
            f"(jaxperf_limit_ceiling) with no program to replay "
            f"({(record.program or {}).get('unavailable', 'none stored')}); record it on a quieter machine, "
            "or pass --jaxperf-allow-wide-limits",
            True,
        )
    return line, False


def _extend(
    measured: list[CheckRecord], medians: dict[int, list[float]], store: BaselineStore, messages: list[str]
) -> tuple[list[CheckRecord], dict[int, int]]:
    """--jaxperf-extend-baselines: each stored baseline's process medians joined to this recording's
    (``medians`` updated in place); what stays out, and why, goes to the messages."""
    kept: list[CheckRecord] = []
    recordings: dict[int, int] = {}
    for record in measured:
        name = f"{record.module}::{record.baseline_key}"
        try:
            lookup = store.lookup(record.module, record.baseline_key)
        except BaselineError as error:
            # A file that cannot be read, or a record in it that is no measurement: nothing is built on
            # it, and it is left as it is.
            messages.append(f"jaxperf: {name} not extended: {error}")
            continue
        if lookup is not None and lookup.record is not None:
            try:
                medians[id(record)] = extended_medians(
                    lookup.record, record.gate_fields(), medians[id(record)]
                )
            except ProgramChanged as error:
                messages.append(
                    f"jaxperf: {name} not extended: {error}; it keeps its baseline "
                    "(--jaxperf-update-baselines records it anew)"
                )
                continue
            recordings[id(record)] = int(lookup.record.get("recordings") or 1) + 1
        kept.append(record)
    messages.append(
        f"jaxperf: {len(recordings)} baseline(s) extended with this recording's processes, "
        f"{len(kept) - len(recordings)} recorded anew"
    )
    return kept, recordings


def repeat_medians(
    measured: list[CheckRecord],
    settings: PluginSettings,
    invocation_args: tuple[str, ...],
    messages: list[str],
) -> dict[tuple[str, str], list[float]]:
    """Medians from ``repeat - 1`` extra processes running the same tests: the noise floor's data."""
    if settings.repeat <= 1 or os.environ.get(REPEAT_CHILD_ENV):
        return {}
    nodeids = sorted({r.nodeid for r in measured})
    medians: dict[tuple[str, str], list[float]] = {}
    with scratch_directory("repeat") as scratch, _interrupt_writes_nothing():
        for index in range(settings.repeat - 1):
            results = scratch / f"run{index}.json"
            args = [
                "--jaxperf", f"--jaxperf-json={results}", f"--jaxperf-baselines={settings.baselines_dir}",
                "-p", "no:cacheprovider", "-q", *_forwarded_options(invocation_args), *nodeids,
            ]  # fmt: skip
            env = child_process_environment(**{REPEAT_CHILD_ENV: "1"})
            run_pytest(args, cwd=settings.rootdir, env=env)
            if not results.exists():
                messages.append(f"jaxperf: noise-floor run {index + 2} wrote no results; skipped")
                continue
            try:
                run = load_results(results)
            except ResultsError as error:
                messages.append(
                    f"jaxperf: noise-floor run {index + 2}'s results cannot be used ({error}); skipped"
                )
                continue
            for record in run.measured.values():
                key = (record.module, record.baseline_key)
                medians.setdefault(key, []).append(record.timed["median"])
    messages.append(
        f"jaxperf: noise floor from {settings.repeat} processes (this one and {settings.repeat - 1} more)"
    )
    return medians


@contextlib.contextmanager
def _interrupt_writes_nothing() -> Iterator[None]:
    # The child pytest stops on the same Ctrl-C (it is in the terminal's process group); subprocess.run
    # has killed it by the time the interrupt reaches here.
    try:
        yield
    except KeyboardInterrupt:
        raise RecordingInterrupted(
            "jaxperf: interrupted during the noise-floor runs; no baseline was written"
        ) from None


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


def program_lines(measured: list[CheckRecord]) -> list[str]:
    """What the recording stores of the programs: how many, their size, and each one left out with why."""
    stored = [r for r in measured if program_stored(r.program)]
    missing = [r for r in measured if r.program and "unavailable" in r.program]
    lines = []
    if stored:
        sizes = {
            f"{r.module}::{r.baseline_key}": r.program.get("stored_bytes", 0) for r in stored if r.program
        }
        largest = max(sizes, key=lambda name: sizes[name])
        lines.append(
            f"jaxperf: {len(stored)} program(s) stored with their baselines, "
            f"{format_bytes(sum(sizes.values()))} compressed in all "
            f"(largest {largest}: {format_bytes(sizes[largest])})"
        )
    lines += [
        f"jaxperf: {r.module}::{r.baseline_key}: no program stored: {r.program['unavailable']}"
        for r in missing
        if r.program
    ]
    return lines


#: Samples kept in a baseline: evenly spaced order statistics, enough for the bootstrap of the median.
_BASELINE_SAMPLES = 41


class ProgramChanged(Exception):
    """A baseline cannot take another recording: what it measured is no longer the same program."""


#: Process medians a baseline keeps when recordings are added to it (the most recent).
MAX_PROCESS_MEDIANS = 12


def extended_medians(stored: Mapping[str, Any], current: Mapping[str, Any], new: list[float]) -> list[float]:
    """A baseline's process medians with another recording's added, the latest MAX_PROCESS_MEDIANS kept.

    Only the same program may be added: medians of a changed model are not the same code measured at
    another time, so a change in compiles, FLOPs, bytes, memory or the optimized program's fingerprint
    (``current`` against ``stored``) raises :class:`ProgramChanged` naming it.
    """
    regressions, improvements, _ = deterministic_changes(current, stored)
    changes = regressions + improvements
    # The same work can be fused differently, and run at another speed: the optimized program's
    # fingerprint (source locations and autotuning stripped) tells.
    now = (current.get("metrics") or {}).get("hlo_fingerprint")
    before = (stored.get("metrics") or {}).get("hlo_fingerprint")
    if now and before and now != before:
        changes.append(f"optimized HLO fingerprint {now} vs baseline {before}")
    if changes:
        raise ProgramChanged(f"its program changed since it was recorded ({'; '.join(changes)})")
    recorded = [float(m) for m in stored.get("process_medians") or [stored["median"]]]
    return [*recorded, *new][-MAX_PROCESS_MEDIANS:]


def baseline_record(
    record: CheckRecord,
    process_medians: list[float],
    floor: float,
    commit: str,
    recordings: int = 1,
) -> dict[str, Any]:
    """What a baseline keeps of a measured check.

    With medians from several processes, the baseline sits at their median (one process can be lucky or
    slow by more than its own samples show); this process's samples are scaled to that centre, so the
    bootstrap keeps their spread around the more robust location.
    """

    timing = record.timed
    own_median = float(timing["median"] or 0.0)
    centre = statistics.median(process_medians) if process_medians else own_median
    scale = centre / own_median if own_median else 1.0
    ordered = np.sort(np.asarray(timing["samples"], dtype=float)) * scale
    sketch = np.quantile(ordered, np.linspace(0, 1, _BASELINE_SAMPLES)) if len(ordered) else ordered
    q1, q3 = np.quantile(ordered, [0.25, 0.75]) if len(ordered) else (0.0, 0.0)
    return {
        "variant": record.variant,
        "model": record.model,
        "inputs": record.inputs,
        "mode": timing["mode"],
        "median": centre,
        "ci_low": (timing["ci_low"] or 0.0) * scale,
        "ci_high": (timing["ci_high"] or 0.0) * scale,
        "p90": (timing["p90"] or 0.0) * scale,
        "p99": (timing["p99"] or 0.0) * scale,
        "process_medians": process_medians,
        "iqr": float(q3 - q1),
        "sample_count": timing["sample_count"],
        "samples": [float(s) for s in sketch],
        "items_per_call": timing["items_per_call"],
        "noise_floor": floor,
        "processes": len(process_medians),
        "recordings": recordings,
        "compiles": record.compiles,
        "metrics": record.metrics,
        **({"program": record.program} if record.program else {}),
        "date": datetime.datetime.now(datetime.UTC).date().isoformat(),
        "commit": commit,
    }
