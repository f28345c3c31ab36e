"""The precision check of one test case: the audit of what its matmuls compute in, and (but for float32)
its fidelity against the model in float32 on generated inputs."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from ..core.memory import tree_bytes
from ..core.wrap import wrap_model
from ..errors import CaseFailed, IdenticalInputsWarning, LowPrecisionReferenceWarning
from ..records import PrecisionRecord
from .audit import audit
from .fidelity import check_fidelity, floor_for

if TYPE_CHECKING:
    from ..core.wrap import WrappedModel
    from ..specs import DtypeSpec


def check_precision(
    model: Any,
    params: Any,
    wrapped: WrappedModel,
    example_inputs: tuple[Any, ...],
    *,
    dtype: str,
    spec: DtypeSpec,
    left_in_float: tuple[str, ...],
    database_key: str,
) -> PrecisionRecord:
    """Audit the variant's matmuls and (but for float32) check it against ``model`` in float32.

    ``wrapped`` is the variant of ``model`` (with ``params``) in ``dtype``; raises
    :class:`~pytest_jaxperf.errors.CaseFailed` on either check; returns the summary the record keeps.
    """
    __tracebackhide__ = True
    # float32's parameter bytes are the reference's: the model as given, wrapped as it is.
    reference = (
        wrapped
        if dtype == "float32"
        else wrap_model(model, params=params, jit=True, name=wrapped.name, pattern=wrapped.pattern)
    )
    compiled = wrapped.lower(*example_inputs)
    result = audit(
        wrapped.program(*example_inputs),
        dtype,
        compiled.compile().as_text() if compiled is not None else "",
    )
    summary = PrecisionRecord(
        dtype=dtype,
        audit=result.to_dict(),
        left_in_float=list(left_in_float),
        param_bytes=tree_bytes(wrapped.params),
        float32_param_bytes=tree_bytes(reference.params),
        fidelity=None,
    )
    if not result.passed:
        raise CaseFailed(result.failure())
    reference_audit = result if dtype == "float32" else audit(reference.program(*example_inputs), "float32")
    lowered = reference_audit.in_low_precision()
    if lowered:
        warnings.warn(
            LowPrecisionReferenceWarning(
                f"{wrapped.name} ({dtype}): its float32 case computes {lowered} of "
                f"{len(reference_audit.matmuls)} matmuls in lower precision (the model's own layer "
                "dtypes): it is no float32 reference, and the fidelity check compares with it as it is; "
                "build the model with float32 layers to check its low-precision variants"
            ),
            stacklevel=2,
        )
    if dtype == "float32":
        return summary
    fidelity = check_fidelity(
        reference,
        wrapped,
        example_inputs,
        dtype=dtype,
        floor_db=floor_for(dtype, spec.min_sqnr_db),
        max_examples=spec.max_examples,
        database_key=database_key,
        input_scale=spec.input_scale,
        input_kinds=spec.input_kinds,
        int_range=spec.int_range,
    )
    summary["fidelity"] = fidelity.to_dict()
    summary["distinct_inputs"] = fidelity.distinct_inputs
    # A failure's search ends replaying one example (hypothesis shrinks it, or replays the stored one):
    # the same input again is no sign of inputs that cannot vary.
    if fidelity.examples > 1 and fidelity.distinct_inputs == 1 and not fidelity.failure:
        warnings.warn(
            IdenticalInputsWarning(
                f"{wrapped.name} ({dtype}): all {fidelity.examples} inputs the fidelity check generated "
                "were the same one: its inputs hold no floating-point values to vary, and its integer "
                "inputs one value each in the example; declare their range: "
                "@jaxperf.dtype(..., int_range=(lowest, highest))"
            ),
            stacklevel=2,
        )
    if fidelity.failure:
        raise CaseFailed(fidelity.failure)
    return summary
