"""What a test hands to the session: plain, serialisable result records (no jax objects).

A check's parts (its timing, exact metrics, roofline, verdict, precision and memory) are typed
dictionaries: the shape of the results JSON, checked by mypy wherever they are read, and cast from JSON
in one place (:func:`record_from_dict`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict, TypeGuard


class TimingRecord(TypedDict):
    """What the timing engine measured (:class:`pytest_jaxperf.core.timing.Timing`)."""

    mode: str
    samples: list[float]
    sample_count: int
    calls_per_sample: int
    items_per_call: int
    median: float
    ci_low: float
    ci_high: float
    p90: float
    p99: float
    warmup_calls: int
    seconds_spent: float
    throughput: float


class MetricsRecord(TypedDict):
    """The deterministic figures of a compiled program (:class:`pytest_jaxperf.core.metrics.Metrics`)."""

    flops: float | None
    transcendentals: float | None
    bytes_accessed: float | None
    argument_bytes: int | None
    output_bytes: int | None
    temp_bytes: int | None
    alias_bytes: int | None
    generated_code_bytes: int | None
    hlo_ops: int
    hlo_fusions: int
    hlo_custom_calls: int
    hlo_fingerprint: str
    memory_bytes: int | None


class RooflineRecord(TypedDict):
    """Achieved FLOP/s and bytes/s, and their fraction of the device's peak where it is known."""

    flops_per_second: float | None
    bytes_per_second: float | None
    peak_source: NotRequired[str]
    fraction_of_peak_flops: NotRequired[float | None]
    fraction_of_peak_bytes: NotRequired[float | None]


class VerdictRecord(TypedDict):
    """The gate's word on one measurement (:class:`pytest_jaxperf.verdicts.Verdict`)."""

    status: str
    reason: str
    ratio: float | None
    ci_low: float | None
    ci_high: float | None
    limit: float | None
    deterministic: list[str]
    regressed_exactly: bool
    decided_by: NotRequired[str]
    """``replay``, ``cross-process`` or ``exact``: the tier whose figures gave the status."""
    cross_process: NotRequired[str]
    """The cross-process timing tier's own status, where another tier decided (or ``not compared``)."""
    detectable: NotRequired[float | None]
    """The smallest slowdown the deciding timing tier can call a regression: the replay's threshold, or
    the cross-process limit (the threshold raised by the baseline's noise floor)."""
    threshold: NotRequired[float]
    """The threshold that tier was given."""
    recorded_elsewhere: NotRequired[str]
    """For a baseline of another CPU model or jax: how its environment differs (times not compared)."""


class AuditRecord(TypedDict):
    """What the precision audit found (:class:`pytest_jaxperf.checks.audit.Audit`)."""

    dtype: str
    matmuls: list[dict[str, Any]]
    problems: dict[str, list[str]]
    hidden: list[str]
    apart: NotRequired[list[str]]
    """Matmuls not judged, not the model's compute (``rope (input-independent)``)."""
    compiled: dict[str, int]
    summary: str


class FidelityRecord(TypedDict):
    """What the fidelity check measured (:class:`pytest_jaxperf.checks.fidelity.FidelityResult`);
    infinite SQNRs (exact outputs) as None."""

    dtype: str
    floor_db: float
    examples: int
    seconds: float
    min_sqnr_db: float | None
    min_worst_channel_db: float | None
    max_abs: float
    failure: str | None
    distinct_inputs: int
    """How many of the generated inputs differ from each other."""


class PrecisionRecord(TypedDict):
    """Under ``@jaxperf.dtype``: the audit, the fidelity check and the parameter bytes of the variant."""

    dtype: str
    audit: AuditRecord
    left_in_float: list[str]
    """Matmuls the built-in int8 quantizer could not reach (inside scan/while/cond)."""
    param_bytes: int
    float32_param_bytes: int
    fidelity: FidelityRecord | None
    distinct_inputs: NotRequired[int]
    """How many of the fidelity check's generated inputs differed from each other (not for float32)."""


class BreakdownRecord(TypedDict):
    """What a compiled program needs on its device (:class:`pytest_jaxperf.core.memory.MemoryBreakdown`)."""

    arguments: int
    outputs: int
    temporaries: int
    aliased: int
    generated_code: int
    total: int


class MemoryRecord(TypedDict):
    """Under ``@jaxperf.memory``: the budget, the compiled program's breakdown, the device peak (GPU)."""

    budget_bytes: int
    compiled: BreakdownRecord
    device_peak_bytes: NotRequired[int]


class ProgramRecord(TypedDict, total=False):
    """The exported program of a measured check, stored with its baseline; or why it was not."""

    format: str
    """How ``data`` is encoded (:data:`pytest_jaxperf.core.export.FORMAT`)."""
    serialized_bytes: int
    stored_bytes: int
    data: str
    unavailable: str
    """Why no program was stored (not compiled, a host callback, over the size limit, ...)."""


def program_stored(program: Any) -> TypeGuard[dict[str, Any]]:
    """Whether a record's ``program`` holds a stored program, not only the reason there is none."""
    return isinstance(program, dict) and "data" in program


class ReplayRecord(TypedDict, total=False):
    """A check's current program timed against its baseline's stored program in the same process
    (:class:`pytest_jaxperf.core.replay.Replay`); or why it was not (``unavailable``)."""

    ratio: float
    """Current time / baseline program's time."""
    ci_low: float
    ci_high: float
    blocks: int
    pairs: int
    calls_per_slot: int
    seconds: float
    arguments: str
    """``current`` (the check's own state and inputs) or ``generated`` (arrays of the stored shapes)."""
    same_program: bool
    compile_seconds_current: float
    compile_seconds_baseline: float
    compile_ratio: float
    """Current compile / baseline program's compile; above SLOWER_COMPILE_RATIO the summary warns."""
    compile_cache: bool
    """Whether jax's persistent compilation cache was on (the compile times may be cache reads)."""
    note: str
    unavailable: str
    """Why the check was not replayed (no program stored, another platform, unreadable by this jax)."""


def counts_bytes(kind: str) -> bool:
    """Whether a program change of this kind (``temporary bytes``, ``bytes accessed``) counts bytes."""
    return "bytes" in kind


class ProgramChangeRecord(TypedDict):
    """One difference between the baseline's optimized program and the current one (what the
    explanation of a regression lists, largest first)."""

    kind: str
    """What differs: ``kernels``, ``dots``, ``convolutions``, ``converts``, ``transposes``, ``copies``,
    ``custom calls``, ``collectives``, ``parameter bytes``, ``temporary bytes``; where no program was
    compared, the recorded ``ops``, ``fusions``, ``custom calls``, ``bytes accessed`` and ``flops``."""
    description: str
    """One line a person reads, e.g. ``transpose f32[256,784]: 0 → 1``."""
    baseline: int
    current: int
    """The counts (or bytes, for the byte kinds) on each side."""
    bytes: int
    """The bytes the difference touches (its instructions' outputs, or the byte change): the ranking."""


class OpTimeRecord(TypedDict):
    """One op or fusion of the programs, its time per call in each (from a profiler trace of both)."""

    op: str
    """Its instruction name in the current program (the baseline's, where it is gone)."""
    description: str
    """What it computes, e.g. ``loop fusion (add+multiply+tanh) f32[64,256]``."""
    baseline_seconds: float
    current_seconds: float
    share: float | None
    """Its part of the per-call time the programs' ops added (1.0 = all of it); None where the ops added
    no time."""


class ExplanationRecord(TypedDict, total=False):
    """Why a check's time changed: its program against the baseline's, and where the time went."""

    headline: str
    """The top line: the largest difference, in words."""
    program_changes: list[ProgramChangeRecord]
    """Every difference between the two optimized programs, largest first."""
    counts: dict[str, dict[str, int]]
    """``baseline`` and ``current``: op and fusion counts by kind in each optimized program."""
    no_program: str
    """Why the programs could not be compared (no stored program; what was compared instead)."""
    op_times: list[OpTimeRecord]
    """The ops whose time changed most, the ones that added most first."""
    no_time_breakdown: str
    """Why there is no per-op time (the profiler could not start, the trace has no per-op events)."""
    seconds: float
    """What the explanation took (the programs' HLO read, their four profiled runs)."""


#: A compile this much slower than the baseline program's, both compiled in the same process, is a warning.
SLOWER_COMPILE_RATIO = 1.25


class InterleavedRecord(TypedDict):
    """Two callables timed interleaved (:class:`pytest_jaxperf.core.timing.Comparison`)."""

    name_a: str
    name_b: str
    median_a: float
    median_b: float
    ratio: float
    ci_low: float
    ci_high: float
    rounds: int


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
    timing: TimingRecord | None = None
    metrics: MetricsRecord | None = None
    roofline: RooflineRecord | None = None
    verdict: VerdictRecord | None = None
    precision: PrecisionRecord | None = None
    """Under ``@jaxperf.dtype``: the audit, the fidelity check and the parameter bytes of the variant."""
    memory: MemoryRecord | None = None
    """Under ``@jaxperf.memory``: the budget, the compiled program's breakdown, the device peak (GPU)."""
    program: ProgramRecord | None = None
    """When baselines are recorded: the exported program stored with the baseline, or why it is not."""
    replay: ReplayRecord | None = None
    """Under ``--jaxperf``, with a baseline: its stored program replayed beside this one, or why not."""
    threshold: float | None = None
    """Under ``--jaxperf``: the cross-process threshold it is gated at (its ``@jaxperf.gate``'s, else the
    session's)."""
    explanation: ExplanationRecord | None = None
    """Under ``--jaxperf``, for a regressed check (any, with ``--jaxperf-explain``): why its time changed."""
    trace: str | None = None
    """With ``--jaxperf-profile=DIR``: the folder of the check's profiler trace (Perfetto, XProf)."""

    @property
    def timed(self) -> TimingRecord:
        """The timing of a measured check (ValueError for a check that was not timed)."""
        if self.timing is None:
            raise ValueError(f"{self.nodeid} {self.key} was not timed")
        return self.timing

    @property
    def module(self) -> str:
        return self.nodeid.split("::", 1)[0]

    def gate_fields(self) -> dict[str, Any]:
        """What the gate judges of a timed check (``verdicts.verdict``'s ``current``, or, for
        ``jaxperf compare``, its reference): the median, the batch, the sample count, compiles, metrics."""
        return {
            "median": self.timed["median"],
            # .get: results files written before these fields were added lack them
            "items_per_call": self.timed.get("items_per_call"),
            "sample_count": self.timed.get("sample_count"),
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
    comparison: InterleavedRecord
    """Names, medians, ratio, interval, rounds."""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "comparison", **dataclasses.asdict(self)}


Record = CheckRecord | FigureRecord | ComparisonRecord


def record_from_dict(data: dict[str, Any]) -> Record:
    """Rebuild a record sent through ``user_properties`` (possibly from an xdist worker) or JSON."""
    fields = {k: v for k, v in data.items() if k != "kind"}
    kind = data.get("kind")
    if kind == "check":
        fields["steady_call_seconds"] = tuple(fields["steady_call_seconds"])
        # The typed parts come back in the shape to_dict wrote them (the JSON boundary).
        return CheckRecord(**fields)
    if kind == "comparison":
        return ComparisonRecord(**fields)
    return FigureRecord(**fields)
