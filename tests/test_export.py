"""A wrapped model's program stored and read back: the same results, its precision kept, and every way it
cannot be stored or read said plainly."""

from __future__ import annotations

import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from pytest_jaxperf.core.export import (
    DEFAULT_LIMIT_BYTES,
    ProgramNotExported,
    ProgramUnreadable,
    StoredProgram,
    export_program,
    load_program,
)
from pytest_jaxperf.core.wrap import wrap_model
from pytest_jaxperf.optimize.precision import mixed_precision
from pytest_jaxperf.optimize.quantize import quantize_int8

from .conftest import expect


class Decoder(nnx.Module):
    def __init__(self, *, rngs: nnx.Rngs) -> None:
        self.hidden = nnx.Linear(32, 128, rngs=rngs)
        self.out = nnx.Linear(128, 64, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return nnx.sigmoid(self.out(nnx.relu(self.hidden(x))))


X = jax.random.normal(jax.random.key(0), (16, 32))


def _replayed(stored: StoredProgram, wrapped_params: object, *inputs: jax.Array) -> np.ndarray:
    """The stored program run on the state and inputs, through its text form as a baseline file keeps it."""
    again = StoredProgram.from_text(stored.to_text(), stored.serialized_bytes)
    exported = load_program(again)
    return np.asarray(exported.call(jax.tree_util.tree_leaves(wrapped_params), *inputs))


def test_a_stored_program_computes_what_the_live_one_does() -> None:
    wrapped = wrap_model(Decoder(rngs=nnx.Rngs(0)), jit=True)
    stored = export_program(wrapped, (X,), DEFAULT_LIMIT_BYTES)
    assert (
        0 < len(stored.data) < stored.serialized_bytes < 64 * 1024
    )  # state is an argument: no weights inside
    np.testing.assert_array_equal(_replayed(stored, wrapped.params, X), np.asarray(wrapped(X)))


@pytest.mark.parametrize("precision", ["bfloat16", "int8"])
def test_a_low_precision_variant_is_stored_as_its_own_program(precision: str) -> None:
    model = Decoder(rngs=nnx.Rngs(0))
    if precision == "bfloat16":
        low, _ = mixed_precision(model, jnp.bfloat16)
        wrapped = wrap_model(low, jit=True, cast_inputs=jnp.bfloat16)
        marker = "bf16"
    else:
        quantized = quantize_int8(model, X)
        wrapped = wrap_model(quantized.apply, params=quantized.params, jit=True)
        marker = "i8"
    stored = export_program(wrapped, (X,), DEFAULT_LIMIT_BYTES)
    exported = load_program(stored)
    assert marker in exported.mlir_module()  # the precision is in the stored program itself
    np.testing.assert_allclose(
        _replayed(stored, wrapped.params, X).astype(np.float32), np.asarray(wrapped(X)).astype(np.float32)
    )


def test_what_cannot_be_stored_says_why() -> None:
    def with_host_callback(x: jax.Array) -> jax.Array:
        return jax.pure_callback(np.sin, jax.ShapeDtypeStruct(x.shape, x.dtype), x)

    with pytest.raises(ProgramNotExported, match=r"jax.export refused it: .*callback"):
        export_program(wrap_model(with_host_callback, jit=True), (X,), DEFAULT_LIMIT_BYTES)
    with pytest.raises(ProgramNotExported, match=r"not compiled here \(no @jaxperf.jit_warm\)"):
        export_program(wrap_model(Decoder(rngs=nnx.Rngs(0)), jit=False), (X,), DEFAULT_LIMIT_BYTES)
    with pytest.raises(
        ProgramNotExported, match=r"exported program is [\d,]+ bytes, over the limit of 1,000"
    ):
        export_program(wrap_model(Decoder(rngs=nnx.Rngs(0)), jit=True), (X,), 1000)


def test_a_damaged_stored_program_is_unreadable_never_misread() -> None:
    stored = export_program(wrap_model(Decoder(rngs=nnx.Rngs(0)), jit=True), (X,), DEFAULT_LIMIT_BYTES)
    with pytest.raises(ProgramUnreadable, match="corrupt or truncated"):
        load_program(StoredProgram(stored.data[: len(stored.data) // 2], stored.serialized_bytes))
    with pytest.raises(ProgramUnreadable, match="its record says 12"):
        load_program(StoredProgram(stored.data, 12))
    with pytest.raises(ProgramUnreadable, match="not base64"):
        StoredProgram.from_text("not base64 at all!", stored.serialized_bytes)
    garbage = b"\x00" * 64
    with pytest.raises(ProgramUnreadable, match="cannot read the stored program"):
        load_program(StoredProgram(zlib.compress(garbage), len(garbage)))


def test_a_sharded_program_keeps_its_devices(jaxperf_pytester: pytest.Pytester) -> None:
    # Eight virtual CPU devices need a fresh process: the device count is fixed when jax starts.
    jaxperf_pytester.makeini("[pytest]\naddopts = -p no:cacheprovider\njaxperf_cpu_devices = 8\n")
    jaxperf_pytester.makepyfile(
        """
        import jax
        import jax.numpy as jnp
        import numpy as np
        from flax import nnx

        from pytest_jaxperf.core.export import DEFAULT_LIMIT_BYTES, export_program, load_program
        from pytest_jaxperf.core.placement import batch_mesh
        from pytest_jaxperf.core.wrap import wrap_model


        def test_sharded():
            model = nnx.Linear(32, 16, rngs=nnx.Rngs(0))
            wrapped = wrap_model(model, jit=True, mesh=batch_mesh(8))
            x = jnp.ones((16, 32))
            exported = load_program(export_program(wrapped, (x,), DEFAULT_LIMIT_BYTES))
            assert exported.nr_devices == 8
            out = exported.call(jax.tree_util.tree_leaves(wrapped.params), *wrapped.place(x))
            np.testing.assert_allclose(np.asarray(out), np.asarray(wrapped(x)), rtol=1e-6)
        """
    )
    expect(jaxperf_pytester, passed=1)
