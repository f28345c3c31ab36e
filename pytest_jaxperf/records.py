"""What a test hands to the session: plain, serialisable result records (no jax objects)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

#: Key of the records in ``report.user_properties``; xdist carries user_properties to the controller.
USER_PROPERTY = "jaxperf"


@dataclass(frozen=True)
class CheckRecord:
    """One ``jaxperf.check`` call: the model, the variant, and what its warm-up measured."""

    nodeid: str
    variant: str
    model: str
    inputs: str
    """The example inputs' abstract signature, e.g. ``x: f32[64,32] on cpu:0``."""
    jit: bool
    compiles: int
    compile_seconds: float
    first_call_seconds: float
    steady_call_seconds: tuple[float, ...]

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

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "figure", **dataclasses.asdict(self)}


Record = CheckRecord | FigureRecord


def record_from_dict(data: dict[str, Any]) -> Record:
    """Rebuild a record sent through ``user_properties`` (possibly from an xdist worker)."""
    fields = {k: v for k, v in data.items() if k != "kind"}
    if data.get("kind") == "check":
        fields["steady_call_seconds"] = tuple(fields["steady_call_seconds"])
        return CheckRecord(**fields)
    return FigureRecord(**fields)
