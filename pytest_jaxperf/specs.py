"""Frozen marker specs and the active Variant (the plugin's own settings are in :mod:`.settings`).

Pure data and validation; nothing here imports jax. Marker arguments are checked once, at collection,
and a bad one raises :class:`MarkerError` naming the marker and the value, which the plugin turns into a
collection error naming the test.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .units import parse_bytes

#: Accepted dtype names → canonical name.
DTYPE_NAMES: Mapping[str, str] = {
    "float32": "float32",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "int8": "int8",
    "int8-dynamic": "int8-dynamic",
}
#: Canonical name → the short form used in test ids and variant ids.
DTYPE_SHORT: Mapping[str, str] = {
    "float32": "fp32",
    "bfloat16": "bf16",
    "float16": "fp16",
    "int8": "int8",
    "int8-dynamic": "int8-dynamic",
}
PLATFORMS = ("cpu", "gpu", "tpu")


class MarkerError(ValueError):
    """A jaxperf marker was given an argument it cannot accept."""


@dataclass(frozen=True)
class JitWarmSpec:
    """``@jaxperf.jit_warm(warmup=2, max_compiles=1)``."""

    warmup: int = 2
    """Calls made on the example inputs before the model counts as warm (the first one compiles)."""
    max_compiles: int = 1
    """Compiles of the wrapped function allowed over the whole test; one more fails it."""


#: The kinds of generated input the fidelity check draws, each probing one way precision fails.
INPUT_KINDS = ("gaussian", "spike", "positive", "constant", "zero")


@dataclass(frozen=True)
class DtypeSpec:
    """``@jaxperf.dtype("bf16", "int8", min_sqnr_db=None, max_examples=None, input_scale=(1e-3, 1e3),
    int_range=None)``."""

    names: tuple[str, ...]
    """Canonical dtype names, one test case each."""
    min_sqnr_db: float | Mapping[str, float] | None = None
    """The output-SQNR floor: one for all variants, or per dtype name; defaults per dtype."""
    max_examples: int | None = None
    """Generated inputs per variant for the fidelity check."""
    input_scale: tuple[float, float] = (1e-3, 1e3)
    """The magnitudes the generated inputs span (log-uniform): narrow it to the model's real domain."""
    input_kinds: tuple[str, ...] = INPUT_KINDS
    """The kinds of generated input: leave out those outside the model's domain (a normalization
    layer's input is never constant, say)."""
    int_range: tuple[int, int] | None = None
    """The values generated integer inputs take, both ends included (token ids: ``(0, vocab - 1)``);
    None: each integer input's own range in the example."""


@dataclass(frozen=True)
class DevicesSpec:
    """``@jaxperf.devices(1, 8, platform=None)``."""

    counts: tuple[int, ...]
    platform: str | None = None


@dataclass(frozen=True)
class MemorySpec:
    """``@jaxperf.memory(max_bytes="2GiB")``."""

    max_bytes: int


@dataclass(frozen=True)
class GateSpec:
    """``@jaxperf.gate(threshold=0.2, mode="throughput", budget_seconds=5)``: this test's measurement."""

    threshold: float | None = None
    mode: str | None = None
    budget_seconds: float | None = None


@dataclass(frozen=True)
class TestSpec:
    """Everything a test's jaxperf markers ask for, validated."""

    __test__ = False  # not a pytest test class, despite the name

    jit_warm: JitWarmSpec | None = None
    dtype: DtypeSpec | None = None
    devices: DevicesSpec | None = None
    memory: MemorySpec | None = None
    gate: GateSpec | None = None

    def variants(self) -> list[Variant]:
        """One Variant per (dtype × device count) case the markers ask for."""
        dtypes = self.dtype.names if self.dtype else ("float32",)
        counts = self.devices.counts if self.devices else (1,)
        return [
            Variant(d, n, self.dtype is not None, self.devices is not None) for d in dtypes for n in counts
        ]


@dataclass(frozen=True)
class Variant:
    """The optimizations active in one test case."""

    dtype: str = "float32"
    """Canonical compute dtype: float32, bfloat16, float16, int8 or int8-dynamic."""
    devices: int = 1
    """Number of devices the batch is sharded over."""
    dtype_in_id: bool = dataclasses.field(default=False, compare=False, repr=False)
    devices_in_id: bool = dataclasses.field(default=False, compare=False, repr=False)

    @property
    def id(self) -> str:
        """The short id, e.g. ``bf16-d8``."""
        return f"{DTYPE_SHORT[self.dtype]}-d{self.devices}"

    @property
    def case_id(self) -> str:
        """The pytest parameter id: only the axes the test's markers spread over (``bf16``, ``d8``)."""
        parts = []
        if self.dtype_in_id:
            parts.append(DTYPE_SHORT[self.dtype])
        if self.devices_in_id:
            parts.append(f"d{self.devices}")
        return "-".join(parts) or self.id


DEFAULT_VARIANT = Variant()


@dataclass(frozen=True)
class Case:
    """One test case: its node id, what its markers ask for, and its variant."""

    nodeid: str
    spec: TestSpec
    variant: Variant = DEFAULT_VARIANT


# --- marker parsing -------------------------------------------------------------------------------


def _reject_unknown(marker: str, kwargs: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise MarkerError(
            f"{marker}: unknown keyword argument {unknown[0]!r}={kwargs[unknown[0]]!r}; "
            f"accepted: {', '.join(allowed) or 'none'}"
        )


def _positive_int(marker: str, name: str, value: Any, *, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if allow_zero else 1):
        wanted = "a non-negative integer" if allow_zero else "a positive integer"
        raise MarkerError(f"{marker}: {name} must be {wanted}, got {value!r}")
    return value


def parse_jit_warm(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> JitWarmSpec:
    marker = "jaxperf_jit_warm"
    if args:
        raise MarkerError(f"{marker}: takes keyword arguments only (warmup=, max_compiles=), got {args[0]!r}")
    _reject_unknown(marker, kwargs, ("warmup", "max_compiles"))
    default = JitWarmSpec()
    return JitWarmSpec(
        warmup=_positive_int(marker, "warmup", kwargs.get("warmup", default.warmup)),
        max_compiles=_positive_int(marker, "max_compiles", kwargs.get("max_compiles", default.max_compiles)),
    )


def canonical_dtype(marker: str, name: Any) -> str:
    if not isinstance(name, str) or name.lower() not in DTYPE_NAMES:
        raise MarkerError(f"{marker}: unknown dtype {name!r}; accepted: {', '.join(DTYPE_NAMES)}")
    return DTYPE_NAMES[name.lower()]


def parse_dtype(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> DtypeSpec:
    marker = "jaxperf_dtype"
    _reject_unknown(
        marker, kwargs, ("min_sqnr_db", "max_examples", "input_scale", "input_kinds", "int_range")
    )
    if not args:
        raise MarkerError(f"{marker}: name at least one dtype, e.g. dtype('bf16', 'int8')")
    names = tuple(canonical_dtype(marker, a) for a in args)
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise MarkerError(f"{marker}: dtype {DTYPE_SHORT[duplicates[0]]!r} is named twice")
    min_sqnr = kwargs.get("min_sqnr_db")
    if isinstance(min_sqnr, Mapping):
        min_sqnr = {
            canonical_dtype(marker, k): _number(marker, f"min_sqnr_db[{k!r}]", v) for k, v in min_sqnr.items()
        }
    elif min_sqnr is not None:
        min_sqnr = _number(marker, "min_sqnr_db", min_sqnr)
    max_examples = kwargs.get("max_examples")
    if max_examples is not None:
        max_examples = _positive_int(marker, "max_examples", max_examples)
    scale = kwargs.get("input_scale", DtypeSpec.input_scale)
    if (
        not isinstance(scale, tuple | list)
        or len(scale) != 2
        or not all(_positive_number(v) for v in scale)
        or scale[0] > scale[1]
    ):
        raise MarkerError(
            f"{marker}: input_scale must be (smallest, largest) positive magnitudes such as (1e-3, 1e3), "
            f"got {scale!r}"
        )
    kinds = kwargs.get("input_kinds", INPUT_KINDS)
    if (
        not isinstance(kinds, tuple | list)
        or not kinds
        or not all(isinstance(k, str) and k in INPUT_KINDS for k in kinds)
    ):
        raise MarkerError(
            f"{marker}: input_kinds must be a non-empty tuple of {', '.join(INPUT_KINDS)}, got {kinds!r}"
        )
    int_range = kwargs.get("int_range")
    if int_range is not None and (
        not isinstance(int_range, tuple | list)
        or len(int_range) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in int_range)
        or int_range[0] > int_range[1]
    ):
        raise MarkerError(
            f"{marker}: int_range must be (lowest, highest) integers, both included, such as (0, vocab - 1), "
            f"got {int_range!r}"
        )
    return DtypeSpec(
        names,
        min_sqnr,
        max_examples,
        (float(scale[0]), float(scale[1])),
        tuple(dict.fromkeys(kinds)),
        (int(int_range[0]), int(int_range[1])) if int_range is not None else None,
    )


def _positive_number(value: Any) -> bool:
    """A finite positive int or float (not a bool: True is no size)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < math.inf


def _number(marker: str, name: str, value: Any) -> float:
    # nan would compare false with every SQNR and switch the fidelity gate off; inf fails every model.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MarkerError(f"{marker}: {name} must be a finite number of dB, got {value!r}")
    return float(value)


def parse_devices(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> DevicesSpec:
    marker = "jaxperf_devices"
    _reject_unknown(marker, kwargs, ("platform",))
    if not args:
        raise MarkerError(f"{marker}: name at least one device count, e.g. devices(1, 8)")
    counts = tuple(_positive_int(marker, "device count", a) for a in args)
    if len(set(counts)) != len(counts):
        raise MarkerError(f"{marker}: a device count is named twice in {counts}")
    platform = kwargs.get("platform")
    if platform is not None and platform not in PLATFORMS:
        raise MarkerError(f"{marker}: unknown platform {platform!r}; accepted: {', '.join(PLATFORMS)}")
    return DevicesSpec(counts, platform)


def parse_memory(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> MemorySpec:
    marker = "jaxperf_memory"
    if args:
        raise MarkerError(f"{marker}: takes keyword arguments only (max_bytes=), got {args[0]!r}")
    _reject_unknown(marker, kwargs, ("max_bytes",))
    if "max_bytes" not in kwargs:
        raise MarkerError(f"{marker}: max_bytes= is required, e.g. memory(max_bytes='2GiB')")
    try:
        return MemorySpec(parse_bytes(kwargs["max_bytes"]))
    except ValueError as error:
        raise MarkerError(f"{marker}: max_bytes: {error}") from None


def parse_gate(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> GateSpec:
    marker = "jaxperf_gate"
    if args:
        raise MarkerError(
            f"{marker}: takes keyword arguments only (threshold=, mode=, budget_seconds=), got {args[0]!r}"
        )
    _reject_unknown(marker, kwargs, ("threshold", "mode", "budget_seconds"))
    threshold = kwargs.get("threshold")
    if threshold is not None and not (_positive_number(threshold) and threshold < 1):
        raise MarkerError(f"{marker}: threshold must be a fraction such as 0.1 (10%), got {threshold!r}")
    mode = kwargs.get("mode")
    if mode is not None and mode not in ("latency", "throughput"):
        raise MarkerError(f"{marker}: unknown mode {mode!r}; accepted: latency, throughput")
    budget = kwargs.get("budget_seconds")
    if budget is not None and not _positive_number(budget):
        raise MarkerError(f"{marker}: budget_seconds must be a positive number, got {budget!r}")
    return GateSpec(
        None if threshold is None else float(threshold), mode, None if budget is None else float(budget)
    )


#: Marker name → parser of its (args, kwargs) into a spec, and the TestSpec field it fills.
PARSERS = {
    "jaxperf_jit_warm": ("jit_warm", parse_jit_warm),
    "jaxperf_dtype": ("dtype", parse_dtype),
    "jaxperf_devices": ("devices", parse_devices),
    "jaxperf_memory": ("memory", parse_memory),
    "jaxperf_gate": ("gate", parse_gate),
}


def build_spec(marks: Iterable[tuple[str, tuple[Any, ...], Mapping[str, Any]]]) -> TestSpec:
    """Validate a test's jaxperf marks, closest first (as ``iter_markers`` yields them).

    The closest mark of each name wins: a function's mark overrides its class's or module's.
    """
    fields: dict[str, Any] = {}
    for name, args, kwargs in marks:
        if name in PARSERS:
            field, parse = PARSERS[name]
            if field not in fields:
                fields[field] = parse(args, kwargs)
    return TestSpec(**fields)
