"""Measure and judge: a check timed under ``--jaxperf``, its exact metrics read from its program, and its
verdict against the committed baseline; the warning an inconclusive verdict gives."""

from __future__ import annotations

import dataclasses
import warnings
from typing import TYPE_CHECKING, Any

from .core.metrics import deterministic_metrics, roofline
from .core.timing import TimingConfig, items_along_batch, measure_callable
from .errors import PerformanceRegression
from .verdicts import INCONCLUSIVE, NEW, NOT_COMPARABLE, REGRESSED, Verdict, verdict

if TYPE_CHECKING:
    from collections.abc import Callable

    from .baseline import BaselineStore
    from .records import CheckRecord
    from .settings import PluginSettings
    from .specs import GateSpec


class JaxperfInconclusive(UserWarning):
    """A measurement whose change against its baseline could be neither confirmed nor ruled out."""


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
) -> CheckRecord:
    """``record`` with its timing, exact metrics, roofline and verdict.

    An inconclusive verdict gets one bounded re-measure with twice the budget; still unclear, it stays a
    :class:`JaxperfInconclusive` warning. A baseline file that cannot be read raises
    :class:`~pytest_jaxperf.baseline.BaselineError`.
    """
    __tracebackhide__ = True
    mode = (gate.mode if gate and gate.mode else None) or settings.mode
    threshold = gate.threshold if gate and gate.threshold else settings.threshold
    timing_config = TimingConfig(
        mode=mode, target=settings.ci_target, budget_seconds=budget_seconds(settings, gate)
    )
    lowered = lower() if lower is not None else None
    metrics = deterministic_metrics(lowered).to_dict() if lowered is not None else None
    items = items or items_along_batch(args)
    timing = measure_callable(fn, args, items_per_call=items, config=timing_config)
    current = dataclasses.replace(record, timing=timing.to_dict(), metrics=metrics)
    judged = baseline_verdict(current, baselines, threshold)
    if judged is not None and judged.status == INCONCLUSIVE:
        longer = dataclasses.replace(timing_config, budget_seconds=2 * timing_config.budget_seconds)
        timing = measure_callable(fn, args, items_per_call=items, config=longer)
        current = dataclasses.replace(current, timing=timing.to_dict())
        judged = baseline_verdict(current, baselines, threshold)
        if judged is not None and judged.status == INCONCLUSIVE:
            warnings.warn(
                JaxperfInconclusive(f"{record.nodeid} {record.key}: inconclusive, {judged.reason}"),
                # The test's line: here ← checking.measure_checked/_called ← Jaxperf.check/measure ← test.
                stacklevel=4,
            )
    return dataclasses.replace(
        current,
        roofline=roofline(metrics, timing.median, settings.measure_peaks),
        verdict=judged.to_dict() if judged is not None else None,
    )


def baseline_verdict(
    current: CheckRecord, baselines: Callable[[], BaselineStore] | None, threshold: float
) -> Verdict | None:
    """``current`` against its stored baseline; None where there is no store or nothing was timed."""
    if baselines is None or current.timing is None:
        return None
    lookup = baselines().lookup(current.module, current.baseline_key)
    if lookup.status == NEW:
        return Verdict(NEW, "no baseline yet: record one with --jaxperf-update-baselines")
    if lookup.record is None:
        return Verdict(NOT_COMPARABLE, lookup.reason)
    return verdict(
        current.gate_fields(),
        lookup.record,
        current.timing["samples"],
        lookup.record.get("samples", []),
        threshold=threshold,
    )


def fail_on_regression(record: CheckRecord, variant_id: str, settings: PluginSettings) -> None:
    """Raise :class:`PerformanceRegression` for a regressed check (not while recording baselines)."""
    __tracebackhide__ = True
    if record.verdict and record.verdict["status"] == REGRESSED and not settings.update_baselines:
        raise PerformanceRegression(f"{record.model} ({variant_id}): {record.verdict['reason']}")
