"""Deterministic metrics: what the compiler says about a program, exact from run to run.

FLOPs and bytes accessed come from the *lowered* program's cost analysis: on GPUs the compiled one leaves
out matmuls that XLA hands to cuBLAS. Memory sizes come from the compiled program's memory analysis, op and
fusion counts and a fingerprint from its optimized HLO, stripped of source locations and backend tuning
configuration so that the fingerprint changes only when the program does.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from ..records import MetricsRecord, RooflineRecord
from .timing import timed_call

_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?[\w.\-]+\s*=\s*\S+\s+([\w\-]+)\(", re.MULTILINE)
_STRIPPED_ATTRIBUTES = ("metadata", "backend_config", "frontend_attributes", "statistics_viz")


@dataclass(frozen=True)
class Metrics:
    """The deterministic figures of one compiled program. None where the backend does not report one."""

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

    @property
    def memory_bytes(self) -> int | None:
        """Device memory the program needs: arguments + outputs + temporaries − aliased.

        (On the CPU, XLA's own ``peak_memory_in_bytes`` leaves temporaries out, so it is not used.)
        """
        parts = (self.argument_bytes, self.output_bytes, self.temp_bytes)
        if any(p is None for p in parts):
            return None
        return sum(p for p in parts if p is not None) - (self.alias_bytes or 0)

    def to_dict(self) -> MetricsRecord:
        return MetricsRecord(
            flops=self.flops,
            transcendentals=self.transcendentals,
            bytes_accessed=self.bytes_accessed,
            argument_bytes=self.argument_bytes,
            output_bytes=self.output_bytes,
            temp_bytes=self.temp_bytes,
            alias_bytes=self.alias_bytes,
            generated_code_bytes=self.generated_code_bytes,
            hlo_ops=self.hlo_ops,
            hlo_fusions=self.hlo_fusions,
            hlo_custom_calls=self.hlo_custom_calls,
            hlo_fingerprint=self.hlo_fingerprint,
            memory_bytes=self.memory_bytes,
        )


def _strip_attribute(text: str, name: str) -> str:
    """Remove every ``, name={...}`` (braces balanced) and ``, name="..."`` from HLO text."""
    out = []
    index = 0
    marker = f", {name}="
    while True:
        found = text.find(marker, index)
        if found < 0:
            out.append(text[index:])
            return "".join(out)
        out.append(text[index:found])
        position = found + len(marker)
        if position < len(text) and text[position] == "{":
            depth = 0
            while position < len(text):
                depth += {"{": 1, "}": -1}.get(text[position], 0)
                position += 1
                if depth == 0:
                    break
        elif position < len(text) and text[position] == '"':
            position = text.index('"', position + 1) + 1
        index = position


def normalized_hlo(text: str) -> str:
    """The optimized HLO's computations, without source locations or tuning attributes."""
    start = min((i for i in (text.find("\n%"), text.find("\nENTRY")) if i >= 0), default=0)
    body = text[start:]
    for name in _STRIPPED_ATTRIBUTES:
        body = _strip_attribute(body, name)
    return body.strip()


def hlo_counts(text: str) -> tuple[int, int, int]:
    """(instructions, fusions, custom calls) in optimized HLO text, parameters not counted."""
    opcodes = [m.group(1) for m in _INSTRUCTION.finditer(text)]
    ops = sum(1 for op in opcodes if op != "parameter")
    return ops, opcodes.count("fusion"), opcodes.count("custom-call")


def _number(analysis: dict[str, Any] | None, key: str) -> float | None:
    if not analysis or key not in analysis:
        return None
    return float(analysis[key])


def deterministic_metrics(lowered: Any) -> Metrics:
    """Metrics of a ``jax.stages.Lowered`` program (compiles it, ahead of time, without running it)."""
    cost = lowered.cost_analysis()
    if isinstance(cost, list):  # jax < 0.4.38 returned one dict per device
        cost = cost[0] if cost else None
    compiled = lowered.compile()
    try:
        memory = compiled.memory_analysis()
    except NotImplementedError:
        memory = None
    text = normalized_hlo(compiled.as_text() or "")
    ops, fusions, custom_calls = hlo_counts(text)

    def size(field: str) -> int | None:
        value = getattr(memory, field, None)
        return int(value) if value is not None else None

    return Metrics(
        flops=_number(cost, "flops"),
        transcendentals=_number(cost, "transcendentals"),
        bytes_accessed=_number(cost, "bytes accessed"),
        argument_bytes=size("argument_size_in_bytes"),
        output_bytes=size("output_size_in_bytes"),
        temp_bytes=size("temp_size_in_bytes"),
        alias_bytes=size("alias_size_in_bytes"),
        generated_code_bytes=size("generated_code_size_in_bytes"),
        hlo_ops=ops,
        hlo_fusions=fusions,
        hlo_custom_calls=custom_calls,
        hlo_fingerprint=hashlib.sha256(text.encode()).hexdigest()[:16],
    )


@dataclass(frozen=True)
class Peak:
    """A chip's peak dense matmul rate and memory bandwidth."""

    flops: float
    """FLOP/s of dense bf16 matmuls on the matrix units."""
    bytes_per_second: float
    source: str


#: Vendor figures (dense, no sparsity), matched against ``device.device_kind``; longest key first.
PEAKS: dict[str, Peak] = {
    "H200": Peak(989e12, 4.8e12, "NVIDIA H200 SXM datasheet"),
    "H100 PCIe": Peak(756e12, 2.0e12, "NVIDIA H100 PCIe datasheet"),
    "H100": Peak(989e12, 3.35e12, "NVIDIA H100 SXM datasheet"),
    "A100": Peak(312e12, 2.039e12, "NVIDIA A100 80GB SXM datasheet"),
    "L4": Peak(121e12, 0.3e12, "NVIDIA L4 datasheet"),
    "TPU v5p": Peak(459e12, 2.765e12, "Google Cloud TPU v5p"),
    "TPU v5 lite": Peak(197e12, 0.819e12, "Google Cloud TPU v5e"),
    "TPU v4": Peak(275e12, 1.2e12, "Google Cloud TPU v4"),
}


def known_peak(device_kind: str) -> Peak | None:
    """The table's entry for a device kind such as ``NVIDIA H100 80GB HBM3``, if any."""
    for key in sorted(PEAKS, key=len, reverse=True):
        if key.lower() in device_kind.lower():
            return PEAKS[key]
    return None


@functools.cache
def measure_ceilings(size: int = 2048, copy_bytes: int = 256 * 1024**2) -> Peak:
    """Measure this device's ceilings on the spot: a square bf16 matmul and a large copy, best of 5."""
    a = jnp.ones((size, size), jnp.bfloat16)
    matmul = jax.jit(lambda x: x @ x)
    source = jnp.ones((copy_bytes // 4,), jnp.float32)
    copy = jax.jit(lambda x: x + 1)

    def best(fn: Any, arg: Any) -> float:
        timed_call(fn, arg)  # compiles
        return min(timed_call(fn, arg)[1] for _ in range(5))

    flops = 2 * size**3 / best(matmul, a)
    bandwidth = 2 * copy_bytes / best(copy, source)  # read once, write once
    return Peak(flops, bandwidth, f"measured on the spot ({size}³ bf16 matmul, {copy_bytes >> 20} MiB copy)")


def roofline(metrics: MetricsRecord | None, median: float, measure_peaks: bool) -> RooflineRecord | None:
    """Achieved FLOP/s and bytes/s, and their fraction of the device's peak where it is known."""
    if not metrics or median <= 0:
        return None

    flops, moved = metrics["flops"], metrics["bytes_accessed"]
    flops_per_second = flops / median if flops else None
    bytes_per_second = moved / median if moved else None
    result = RooflineRecord(flops_per_second=flops_per_second, bytes_per_second=bytes_per_second)
    peak = measure_ceilings() if measure_peaks else known_peak(jax.devices()[0].device_kind)
    if peak is not None:
        result["peak_source"] = peak.source
        result["fraction_of_peak_flops"] = flops_per_second / peak.flops if flops_per_second else None
        result["fraction_of_peak_bytes"] = (
            bytes_per_second / peak.bytes_per_second if bytes_per_second else None
        )
    return result
