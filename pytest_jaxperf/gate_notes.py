"""What the summary says about the gate itself, beside the verdicts: which baselines were recorded
elsewhere, what the replays measured when nothing changed, which checks were not replayed and why, which
compiles got slower, and which checks can only see large slowdowns. Pure functions of the records.
"""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING

from .records import SLOWER_COMPILE_RATIO, CheckRecord
from .units import percent
from .verdicts import NOISE_MULTIPLE, NOT_COMPARED

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .records import Record

#: Replay ratios whose median sits within this of 1 say the programs did not change, whatever the drift.
STEADY_REPLAY = 0.02


def _checks(records: Sequence[Record]) -> list[CheckRecord]:
    return [r for r in records if isinstance(r, CheckRecord)]


def _name(check: CheckRecord) -> str:
    return f"{check.nodeid} {check.key}"


def gate_lines(records: Sequence[Record]) -> list[str]:
    """Every note below, in the order a reader needs them."""
    return (
        elsewhere_lines(records)
        + replay_noise_lines(records)
        + unreplayed_lines(records)
        + compile_lines(records)
        + blind_lines(records)
    )


def elsewhere_lines(records: Sequence[Record]) -> list[str]:
    """Once per other environment: the checks judged against its baselines by replay and exact figures."""
    by_environment: dict[str, list[CheckRecord]] = {}
    for check in _checks(records):
        where = check.verdict.get("recorded_elsewhere") if check.verdict else None
        if where:
            by_environment.setdefault(where, []).append(check)
    lines = []
    for where, checks in sorted(by_environment.items()):
        replayed = sum(1 for c in checks if c.replay and "ratio" in c.replay)
        judged_by = (
            f"judged by replay ({replayed} replayed) and exact figures"
            if replayed
            else "judged by exact figures only (no stored program was replayed)"
        )
        lines.append(
            f"jaxperf: {len(checks)} check(s) have baselines {where}: {judged_by}; "
            "absolute times not compared"
        )
    return lines


def replay_noise_lines(records: Sequence[Record]) -> list[str]:
    """The run's replay noise: checks whose program is the baseline's own replay nothing but noise."""
    same = [c.replay["ratio"] for c in _checks(records) if c.replay and c.replay.get("same_program")]
    if not same:
        return []
    deviations = sorted(abs(r - 1) for r in same)
    return [
        f"jaxperf: replay noise: {len(same)} check(s) replayed their own unchanged program against its "
        f"baseline: ratios {min(same):.3f}…{max(same):.3f}, "
        f"median deviation {statistics.median(deviations):.1%}"
    ]


def unreplayed_lines(records: Sequence[Record]) -> list[str]:
    """Checks with a baseline that were not replayed, grouped by why (the cross-process tier decided)."""
    reasons: dict[str, int] = {}
    for check in _checks(records):
        why = check.replay.get("unavailable") if check.replay else None
        if why:
            reasons[why] = reasons.get(why, 0) + 1
    return [f"jaxperf: {n} check(s) not replayed: {why}" for why, n in sorted(reasons.items())]


def compile_lines(records: Sequence[Record]) -> list[str]:
    """Checks whose XLA compile got more than SLOWER_COMPILE_RATIO slower than the baseline program's,
    both compiled here, the ratio confirmed by up to two more compiles of each: a warning, not a gate (a
    few compiles are no interval)."""
    lines = []
    for check in _checks(records):
        replay = check.replay
        if not replay or replay.get("compile_ratio", 0.0) <= SLOWER_COMPILE_RATIO:
            continue
        if replay.get("compile_cache"):  # the times may be cache reads: no ratio of compiles
            continue
        lines.append(
            f"jaxperf: warning: {_name(check)}: XLA compile {replay['compile_ratio']:.2f}× the baseline "
            f"program's here ({replay['compile_seconds_current']:.3f} s vs "
            f"{replay['compile_seconds_baseline']:.3f} s); cold start (the first call, compile included) "
            f"{check.first_call_seconds:.3f} s"
        )
    return lines


def blind_lines(records: Sequence[Record]) -> list[str]:
    """Checks that can only catch slowdowns beyond twice their threshold: their baseline's recording
    processes spread so much that the cross-process limit is wide, and nothing replays them."""
    lines = []
    for check in _checks(records):
        verdict = check.verdict
        if not verdict:
            continue
        detectable, threshold = verdict.get("detectable"), verdict.get("threshold")
        if detectable is None or threshold is None or detectable <= 2 * threshold:
            continue
        lines.append(
            f"jaxperf: {_name(check)} can only catch slowdowns beyond {percent(detectable)}: its "
            f"baseline's recording processes spread {detectable / NOISE_MULTIPLE:.0%} (recorded on a busy "
            "machine?); a jaxperf.check whose program is stored is judged by replay instead"
        )
    return lines


def paired_drift_lines(records: Sequence[Record], median_ratio: float) -> list[str]:
    """Beside a drift of the cross-process medians: what the replays say of the programs themselves."""
    ratios = sorted(
        c.replay["ratio"]
        for c in _checks(records)
        if c.replay and "ratio" in c.replay and c.verdict and c.verdict.get("cross_process") != NOT_COMPARED
    )
    if len(ratios) < 2:
        return []
    middle = statistics.median(ratios)
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) >= 4 else [ratios[0], middle, ratios[-1]]
    line = (
        f"jaxperf: meanwhile the {len(ratios)} replayed checks' programs ran {percent(middle - 1)} against "
        f"their baselines' own, in the same processes (middle half {percent(quartiles[0] - 1)}…"
        f"{percent(quartiles[2] - 1)})"
    )
    if abs(middle - 1) <= STEADY_REPLAY:
        line += (
            f": the programs did not change, the machine did (cross-process {percent(median_ratio - 1)}); "
            "the replays decided"
        )
    return [line]
