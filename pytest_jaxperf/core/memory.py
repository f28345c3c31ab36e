"""Device memory: what a compiled program needs, what a device has used, and how running out looks.

The compiled program's memory analysis gives arguments, outputs, temporaries and aliased (donated) bytes
on every backend, CPU included, before anything runs: a budget is checked from it without executing, and
the largest batch that fits is found from it without touching device memory. An out-of-memory error
raised while a model runs is ``RESOURCE_EXHAUSTED`` from XLA or the host's ``MemoryError``
(:func:`is_out_of_memory`); :mod:`pytest_jaxperf.failures` turns it into a message a person can act on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from ..records import BreakdownRecord
from ..units import format_bytes
from .program import is_prng_key

if TYPE_CHECKING:
    from .wrap import WrappedModel


def tree_bytes(tree: Any) -> int:
    """Bytes held by the arrays of a pytree (parameters, an NNX state), PRNG keys (an ``nnx.Rngs`` a
    module keeps) counted by their key data."""
    return sum(int(host_array(leaf).nbytes) for leaf in jax.tree_util.tree_leaves(tree))


def host_array(leaf: Any) -> np.ndarray:
    """An array leaf on the host, a PRNG key as its key data (numpy cannot hold a key dtype)."""
    return np.asarray(jax.random.key_data(leaf) if is_prng_key(leaf) else leaf)


@dataclass(frozen=True)
class MemoryBreakdown:
    """What one compiled program needs on its device."""

    arguments: int
    outputs: int
    temporaries: int
    aliased: int
    """Output bytes that reuse (donated) argument buffers: counted once."""
    generated_code: int = 0

    @property
    def total(self) -> int:
        """Device memory the program needs: arguments + outputs + temporaries − aliased."""
        return self.arguments + self.outputs + self.temporaries - self.aliased

    def describe(self) -> str:
        """``arguments 1.2 GiB, outputs 0.5 GiB, temporaries 155.6 GiB`` (aliased when there are any)."""
        parts = [
            f"arguments {format_bytes(self.arguments)}",
            f"outputs {format_bytes(self.outputs)}",
            f"temporaries {format_bytes(self.temporaries)}",
        ]
        if self.aliased:
            parts.append(f"aliased (donated) −{format_bytes(self.aliased)}")
        return ", ".join(parts)

    def to_dict(self) -> BreakdownRecord:
        return BreakdownRecord(
            arguments=self.arguments,
            outputs=self.outputs,
            temporaries=self.temporaries,
            aliased=self.aliased,
            generated_code=self.generated_code,
            total=self.total,
        )


class MemoryAnalysisUnavailable(RuntimeError):
    """The backend does not report a compiled program's memory."""


def compiled_memory(compiled: Any) -> MemoryBreakdown:
    """The breakdown of a ``jax.stages.Compiled`` program; raises :class:`MemoryAnalysisUnavailable`."""
    try:
        analysis = compiled.memory_analysis()
    except NotImplementedError as error:
        raise MemoryAnalysisUnavailable(str(error) or "memory_analysis() is not implemented") from None
    if analysis is None:
        raise MemoryAnalysisUnavailable("memory_analysis() returned nothing")
    if isinstance(analysis, list | tuple):  # one per device on some versions
        analysis = analysis[0]

    def size(name: str) -> int:
        return int(getattr(analysis, name, 0) or 0)

    return MemoryBreakdown(
        arguments=size("argument_size_in_bytes"),
        outputs=size("output_size_in_bytes"),
        temporaries=size("temp_size_in_bytes"),
        aliased=size("alias_size_in_bytes"),
        generated_code=size("generated_code_size_in_bytes"),
    )


def is_out_of_memory(error: BaseException) -> bool:
    """XLA's ``RESOURCE_EXHAUSTED`` (any runtime error type carrying it) or the host's ``MemoryError``."""
    if isinstance(error, MemoryError):
        return True
    return "RESOURCE_EXHAUSTED" in str(error) or "Out of memory" in str(error)


def device_memory_stats(device: Any) -> dict[str, int]:
    """The device's allocator statistics (GPU/TPU: ``bytes_limit``, ``peak_bytes_in_use``...); {} on CPU."""
    try:
        stats = device.memory_stats()
    except Exception:  # some backends raise instead of returning None
        return {}
    return dict(stats or {})


def wrapped_memory(wrapped: WrappedModel, inputs: tuple[Any, ...]) -> MemoryBreakdown:
    """What a wrapped model's compiled program needs for these inputs (compiles ahead of time; runs
    nothing); raises :class:`MemoryAnalysisUnavailable`."""
    lowered = wrapped.lower(*inputs)
    if lowered is None:  # not jitted here: the same function, compiled for the analysis only
        assert wrapped.forward is not None
        lowered = jax.jit(wrapped.forward).lower(wrapped.params, *inputs)
    return compiled_memory(lowered.compile())


def device_peak() -> int | None:
    """The first device's peak bytes in use so far (GPU/TPU; a process-lifetime high-water mark); None
    where the backend keeps no statistics (the CPU)."""
    return device_memory_stats(jax.devices()[0]).get("peak_bytes_in_use")
