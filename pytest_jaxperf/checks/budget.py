"""``@jaxperf.memory``'s budget, judged from the compiled program before anything runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jax

from ..core import memory
from ..core.memory import MemoryAnalysisUnavailable
from ..core.signature import describe_inputs
from ..errors import CaseFailed, CaseUnavailable
from ..records import MemoryRecord
from ..units import format_bytes

if TYPE_CHECKING:
    from ..core.wrap import WrappedModel
    from ..specs import MemorySpec


def check_memory_budget(wrapped: WrappedModel, inputs: tuple[Any, ...], spec: MemorySpec) -> MemoryRecord:
    """Fail before running when the compiled program needs more than the budget; the record's memory
    summary otherwise. CaseUnavailable where the backend does not report a compiled program's memory."""
    __tracebackhide__ = True
    try:
        breakdown = memory.wrapped_memory(wrapped, inputs)
    except MemoryAnalysisUnavailable as error:
        raise CaseUnavailable(
            f"the memory budget cannot be checked: {jax.default_backend()} does not report a compiled "
            f"program's memory ({error})"
        ) from None
    if breakdown.total > spec.max_bytes:
        raise CaseFailed(
            f"{wrapped.name} needs {format_bytes(breakdown.total)} of "
            f"device memory, over its budget of {format_bytes(spec.max_bytes)} "
            f"({breakdown.total:,} > {spec.max_bytes:,} bytes): {breakdown.describe()}; "
            f"inputs {describe_inputs(inputs)}. Nothing was run."
        )
    return MemoryRecord(budget_bytes=spec.max_bytes, compiled=breakdown.to_dict())
