"""Did data parallelism really happen, and does it compute what one device computes?"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from ..core.placement import participating_devices
from ..errors import CaseFailed
from .outputs import compare

if TYPE_CHECKING:
    from ..core.wrap import WrappedModel

#: Relative and absolute tolerance of a sharded output against the single-device one, per dtype.
TOLERANCE = {"float32": 1e-5, "float64": 1e-12, "bfloat16": 1e-2, "float16": 1e-3}
#: float32 outputs where float32 matmuls run at reduced precision by default: TF32 (10-bit mantissa) on
#: NVIDIA GPUs, one bfloat16 pass on TPUs. The sharded program's matmuls have other shapes than the single
#: device's, so other kernels, which round differently.
REDUCED_FLOAT32_TOLERANCE = {"gpu": 5e-3, "cuda": 5e-3, "rocm": 5e-3, "tpu": 2e-2}
#: int8-dynamic quantizes each activation row when the program runs: where the sharded program's float
#: sums round differently, a value on a rounding boundary takes the next int8 code, and that output moves
#: by a whole quantization step. Such a variant is held to the relative L2 error of its whole output.
DYNAMIC_QUANTIZATION_RELATIVE_L2 = 1e-2


def float32_tolerance() -> float:
    """The float32 tolerance on this backend at the configured default matmul precision."""
    precision = str(getattr(jax.config, "jax_default_matmul_precision", None) or "default").lower()
    if precision in ("highest", "float32"):
        return TOLERANCE["float32"]
    return REDUCED_FLOAT32_TOLERANCE.get(jax.default_backend(), TOLERANCE["float32"])


def sharding_problems(
    sharded: WrappedModel, single: WrappedModel, inputs: tuple[Any, ...], variant_dtype: str = "float32"
) -> list[str]:
    """What is wrong with ``sharded`` (a model wrapped over a mesh) against ``single`` (one device).

    The compiled program must span the mesh (its ``num_partitions``), and every output leaf must match the
    single-device run within its dtype's tolerance. An empty list: nothing is wrong.
    """
    assert sharded.mesh is not None
    expected = sharded.mesh.devices.size
    found = participating_devices(sharded.lower(*inputs).compile())
    if found != expected:
        return [
            f"the compiled {sharded.name} runs on {found} device(s), "
            f"not the {expected} its inputs are sharded over"
        ]
    sharded_out = jax.device_get(sharded.on_inputs(*inputs))
    single_out = jax.device_get(single.on_inputs(*inputs))
    problems = []
    for (path, got), want in zip(
        jax.tree_util.tree_flatten_with_path(sharded_out)[0],
        jax.tree_util.tree_leaves(single_out),
        strict=True,
    ):
        dtype = str(np.asarray(got).dtype)
        tolerance = float32_tolerance() if dtype == "float32" else TOLERANCE.get(dtype, 1e-5)
        got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
        if variant_dtype == "int8-dynamic":
            error = compare(want, got).rel_l2
            if error > DYNAMIC_QUANTIZATION_RELATIVE_L2:
                where = jax.tree_util.keystr(path)
                limit = DYNAMIC_QUANTIZATION_RELATIVE_L2
                problems.append(
                    f"the {expected}-device output{where} differs from the single-device output by a "
                    f"relative L2 error of {error:.3g} (tolerance {limit:g} for int8-dynamic)"
                )
            continue
        if not np.allclose(got, want, rtol=tolerance, atol=tolerance):
            worst = float(np.max(np.abs(got - want)))
            problems.append(
                f"the {expected}-device output{jax.tree_util.keystr(path)} differs from the single-device "
                f"output by up to {worst:.3g} (tolerance {tolerance:g})"
            )
    return problems


def check_sharded(
    sharded: WrappedModel, single: WrappedModel, inputs: tuple[Any, ...], variant_dtype: str = "float32"
) -> None:
    """The compiled program really spans the mesh, and it computes what one device computes; raises
    :class:`~pytest_jaxperf.errors.CaseFailed` naming every problem otherwise."""
    __tracebackhide__ = True
    problems = sharding_problems(sharded, single, inputs, variant_dtype)
    if problems:
        raise CaseFailed("; ".join(problems))


def check_pipeline_output(output: Any, reference: Any) -> None:
    """The output of a pipeline split over two devices equals both stages run on one device."""
    __tracebackhide__ = True
    np.testing.assert_allclose(
        np.asarray(output), np.asarray(reference), rtol=1e-5, atol=1e-6,
        err_msg="the pipeline's output differs from both stages run on one device",
    )  # fmt: skip
