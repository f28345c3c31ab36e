"""What a test hands to the session: plain, serialisable result records (no jax objects)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

#: Key of the records in ``report.user_properties``; xdist carries user_properties to the controller.
USER_PROPERTY = "jaxperf"


@dataclass(frozen=True)
class CheckRecord:
    """One ``jaxperf.check`` or ``jaxperf.measure``: the model, the variant, and what was measured.

    ``timing``, ``metrics``, ``roofline`` and ``verdict`` are filled under ``--jaxperf`` only.
    """

    nodeid: str
    variant: str
    model: str
    inputs: str
    """The example inputs' abstract signature, e.g. ``[0]: f32[64,32] on cpu:0``."""
    jit: bool
    compiles: int | None
    compile_seconds: float
    first_call_seconds: float
    steady_call_seconds: tuple[float, ...]
    key: str = ""
    """The measurement's name in the baselines: unique within its test."""
    timing: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    roofline: dict[str, Any] | None = None
    verdict: dict[str, Any] | None = None
    precision: dict[str, Any] | None = None
    """Under ``@jaxperf.dtype``: the audit, the fidelity check and the parameter bytes of the variant."""
    memory: dict[str, Any] | None = None
    """Under ``@jaxperf.memory``: the budget, the compiled program's breakdown, the device peak (GPU)."""

    @property
    def module(self) -> str:
        return self.nodeid.split("::", 1)[0]

    def gate_fields(self) -> dict[str, Any]:
        """What the gate judges of a timed check (``verdicts.verdict``'s ``current``, or, for
        ``jaxperf compare``, its reference): the median, the batch, the sample count, compiles, metrics."""
        timing = self.timing or {}
        return {
            "median": timing["median"],
            "items_per_call": timing.get("items_per_call"),
            "sample_count": timing.get("sample_count"),
            "compiles": self.compiles,
            "metrics": self.metrics,
        }

    @property
    def baseline_key(self) -> str:
        """The record's name inside its module's baseline file: ``test_x[bf16]::Decoder``."""
        return f"{self.nodeid.split('::', 1)[-1]}::{self.key}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "check", **dataclasses.asdict(self)}


@dataclass(frozen=True)
class FigureRecord:
    """A figure a test measured and reported through ``jaxperf.record(name, value, unit)``."""

    nodeid: str
    variant: str
    name: str
    value: float
    unit: str
    model: str = ""
    """For a point of a batch sweep: the model swept."""
    batch: int | None = None
    """For a point of a batch sweep: the batch size of this point."""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "figure", **dataclasses.asdict(self)}


@dataclass(frozen=True)
class ComparisonRecord:
    """``jaxperf.compare(a, b, ...)``: B's time relative to A's, timed interleaved."""

    nodeid: str
    variant: str
    comparison: dict[str, Any]
    """:class:`pytest_jaxperf.core.timing.Comparison` as a dict: names, medians, ratio, interval, rounds."""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "comparison", **dataclasses.asdict(self)}


Record = CheckRecord | FigureRecord | ComparisonRecord


def record_from_dict(data: dict[str, Any]) -> Record:
    """Rebuild a record sent through ``user_properties`` (possibly from an xdist worker) or JSON."""
    fields = {k: v for k, v in data.items() if k != "kind"}
    kind = data.get("kind")
    if kind == "check":
        fields["steady_call_seconds"] = tuple(fields["steady_call_seconds"])
        return CheckRecord(**fields)
    if kind == "comparison":
        return ComparisonRecord(**fields)
    return FigureRecord(**fields)
