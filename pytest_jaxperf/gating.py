"""Measure and judge: a check timed under ``--jaxperf``, its exact metrics read from its program, and its
verdict against the committed baseline; the warning an inconclusive verdict gives."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .core.metrics import deterministic_metrics, roofline
from .core.profile import ProfilerUnavailable, calls_to_profile, write_trace
from .core.replay import ReplayConfig
from .core.timing import TimingConfig, items_along_batch, measure_callable
from .errors import BaselineError
from .replaying import explanation_of_change, prepare_replay, replay_record, replayed
from .verdicts import (
    DECIDED_BY_REPLAY,
    INCONCLUSIVE,
    NEW,
    NOT_COMPARABLE,
    REGRESSED,
    ReplayFigures,
    Verdict,
    verdict,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from jax.export import Exported

    from .baseline import BaselineStore, Lookup
    from .records import CheckRecord
    from .settings import PluginSettings
    from .specs import GateSpec


class JaxperfInconclusive(UserWarning):
    """A measurement whose change against its baseline could be neither confirmed nor ruled out."""


class JaxperfNoTrace(UserWarning):
    """``--jaxperf-profile`` could not trace a check (another trace active, a backend without a profiler)."""


def budget_seconds(settings: PluginSettings, gate: GateSpec | None) -> float:
    """Time spent sampling one measurement: the test's ``@jaxperf.gate`` budget, else the session's."""
    return gate.budget_seconds if gate and gate.budget_seconds else settings.budget_seconds


def measure_and_gate(
    record: CheckRecord,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    lower: Callable[[], Any] | None,
    *,
    items: int | None,
    settings: PluginSettings,
    gate: GateSpec | None,
    baselines: Callable[[], BaselineStore] | None,
    program: Callable[[], tuple[Exported, tuple[Any, ...]]] | None = None,
) -> CheckRecord:
    """``record`` with its timing, exact metrics, roofline and verdict; where its baseline stored a
    program and ``program`` gives the current one, the two replayed side by side decide the timing.

    An inconclusive verdict gets one bounded re-measure (or replay) with twice the budget; still
    unclear, it stays a :class:`JaxperfInconclusive` warning. A baseline file that cannot be read raises
    :class:`~pytest_jaxperf.errors.BaselineError`; a stored program that is damaged, or that fails when
    replayed, :class:`~pytest_jaxperf.errors.CaseFailed`.
    """
    __tracebackhide__ = True
    mode = (gate.mode if gate and gate.mode else None) or settings.mode
    thresholds = Thresholds(
        gate.threshold if gate and gate.threshold else settings.threshold,
        gate.threshold if gate and gate.threshold else settings.replay_threshold,
    )
    budget = budget_seconds(settings, gate)
    timing_config = TimingConfig(mode=mode, target=settings.ci_target, budget_seconds=budget)
    lowered = lower() if lower is not None else None
    metrics = deterministic_metrics(lowered).to_dict() if lowered is not None else None
    items = items or items_along_batch(args)
    timing = measure_callable(fn, args, items_per_call=items, config=timing_config)
    current = dataclasses.replace(
        record, timing=timing.to_dict(), metrics=metrics, threshold=thresholds.cross_process
    )
    try:
        lookup = find_baseline(current, baselines)
    except BaselineError:
        if not settings.update_baselines or settings.extend_baselines:
            raise
        lookup = None  # recorded anew: the record that is no measurement is replaced by this one
    replay_config = ReplayConfig(budget_seconds=budget, target=thresholds.replay / 4)
    # Prepared once: an inconclusive replay is replayed again on the same compiled programs.
    prepared = prepare_replay(current, lookup, program)
    first_replay = replayed(prepared, replay_config)
    current = dataclasses.replace(current, replay=replay_record(first_replay))
    judged = baseline_verdict(current, lookup, thresholds)
    if judged is not None and judged.status == INCONCLUSIVE:
        if judged.decided_by == DECIDED_BY_REPLAY:
            longer_replay = dataclasses.replace(replay_config, budget_seconds=2 * budget)
            longer_replay_of = replayed(prepared, longer_replay, previous=first_replay)
            current = dataclasses.replace(current, replay=replay_record(longer_replay_of))
        else:
            longer = dataclasses.replace(timing_config, budget_seconds=2 * budget)
            timing = measure_callable(fn, args, items_per_call=items, config=longer)
            current = dataclasses.replace(current, timing=timing.to_dict())
        judged = baseline_verdict(current, lookup, thresholds)
        if judged is not None and judged.status == INCONCLUSIVE:
            warnings.warn(
                JaxperfInconclusive(f"{record.nodeid} {record.key}: inconclusive, {judged.reason}"),
                # The test's line: here ← checking.measure_checked/_called ← Jaxperf.check/measure ← test.
                stacklevel=4,
            )
    status = judged.status if judged is not None else None
    explanation = None
    wanted = status == REGRESSED or settings.explain
    if wanted and lookup is not None and lookup.record is not None and not settings.update_baselines:
        explanation = explanation_of_change(prepared, lookup.record, metrics, lowered, budget)
    trace = None
    # Not while recording: the noise floor's processes would write their traces over each other's.
    traces_wanted = settings.profile_on == "all" or status == REGRESSED
    if settings.profile_dir is not None and traces_wanted and not settings.update_baselines:
        trace = traced(fn, args, record, settings.profile_dir, timing.median)
    return dataclasses.replace(
        current,
        roofline=roofline(metrics, timing.median, settings.measure_peaks),
        verdict=judged.to_dict() if judged is not None else None,
        explanation=explanation,
        trace=trace,
    )


def traced(
    fn: Callable[..., Any], args: tuple[Any, ...], record: CheckRecord, folder: Path, one_call: float
) -> str | None:
    """A profiler trace of the check's calls written into its own folder under ``folder``, named by test
    and measurement; None, with a warning saying why, where the profiler cannot write one."""
    target = folder / trace_folder_name(record.nodeid, record.key)
    try:
        write_trace(lambda: fn(*args), calls_to_profile(one_call), target)
    except ProfilerUnavailable as error:
        warnings.warn(
            JaxperfNoTrace(f"{record.nodeid} {record.key}: no trace written: {error}"),
            # The test's line: here ← measure_and_gate ← checking.measure_checked ← Jaxperf.check ← test.
            stacklevel=5,
        )
        return None
    # Said relative to where pytest runs, as the option was given, where the folder lies below it.
    return os.path.relpath(target) if target.is_relative_to(Path.cwd()) else str(target)


def trace_folder_name(nodeid: str, key: str) -> str:
    """``test_models.py.test_vae.bf16.Decoder-3fa2c1`` for ``suites/test_models.py::test_vae[bf16]`` and
    ``Decoder``: one folder per measurement, a name every shell and artifact store takes as it is."""
    path, _, test = nodeid.partition("::")
    name = f"{path.rsplit('/', 1)[-1]}::{test}::{key}".replace("::", ".").replace("[", ".").replace("]", "")
    # Two checks the readable part cannot tell apart (test_model.py in two folders, ``[a b]`` and
    # ``[a-b]``) get folders of their own.
    digest = hashlib.blake2s(f"{nodeid}::{key}".encode(), digest_size=3).hexdigest()
    readable = re.sub(r"[^\w.\-]", "-", name)
    return f"{readable}-{digest}"


@dataclass(frozen=True)
class Thresholds:
    """The thresholds of the timing tiers: across processes (the interval beyond it regresses) and by
    replay (the slowdown it catches: see ``verdicts.replay_status``)."""

    cross_process: float
    replay: float


def find_baseline(
    current: CheckRecord, baselines: Callable[[], BaselineStore | None] | None
) -> Lookup | None:
    """``current``'s stored baseline; None where there is no store or nothing was timed."""
    store = baselines() if baselines is not None else None
    if store is None or current.timing is None:
        return None
    return store.lookup(current.module, current.baseline_key)


def baseline_verdict(current: CheckRecord, lookup: Lookup | None, thresholds: Thresholds) -> Verdict | None:
    """``current`` against its stored baseline (:func:`find_baseline`); None where there is none."""
    if lookup is None or current.timing is None:
        return None
    if lookup.status == NEW:
        return Verdict(NEW, "no baseline yet: record one with --jaxperf-update-baselines")
    if lookup.record is None:
        return Verdict(NOT_COMPARABLE, lookup.reason)
    figures = (
        ReplayFigures.from_record(current.replay) if current.replay and "ratio" in current.replay else None
    )
    return verdict(
        current.gate_fields(),
        lookup.record,
        current.timing["samples"],
        lookup.record.get("samples", []),
        threshold=thresholds.cross_process,
        replay=figures,
        replay_threshold=thresholds.replay,
        comparability=lookup.comparability,
    )
