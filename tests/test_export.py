"""A wrapped model's program stored and read back: the same results, its precision kept, and every way it
cannot be stored or read said plainly."""

from __future__ import annotations

import dataclasses
import json
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
    deserialize_program,
    export_program,
)
from pytest_jaxperf.core.replay import ReplayConfig, current_program, replay, side_by_side
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
    exported = deserialize_program(again)
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
    exported = deserialize_program(stored)
    assert marker in exported.mlir_module()  # the precision is in the stored program itself
    np.testing.assert_allclose(
        _replayed(stored, wrapped.params, X).astype(np.float32), np.asarray(wrapped(X)).astype(np.float32)
    )


def test_a_replay_spends_its_budget_on_the_compiles_first_and_replays_again_without_compiling() -> None:
    wrapped = wrap_model(Decoder(rngs=nnx.Rngs(0)), jit=True)
    baseline, arguments = current_program(wrapped, (X,))
    current, _ = current_program(wrapped, (X,))
    pair = side_by_side(baseline, current, arguments)
    assert pair.same_program
    assert pair.compile_seconds_baseline > 0
    assert pair.compile_seconds_current > 0
    config = ReplayConfig(budget_seconds=0.2)
    # The export and compiles took the whole budget: only the fewest blocks an interval needs are timed.
    spent = replay(pair, config, spent=0.2)
    assert spent.blocks == 3
    assert spent.seconds >= 0.2
    assert spent.ci_low <= spent.ratio <= spent.ci_high
    # Replayed again, longer, on the same compiled programs: no compile happens, and the first replay's
    # blocks are kept, more added.
    compiles: list[str] = []
    jax.monitoring.register_event_duration_secs_listener(lambda event, *_, **__: compiles.append(event))
    longer = replay(pair, dataclasses.replace(config, budget_seconds=0.4), previous=spent)
    assert not [event for event in compiles if event.endswith("backend_compile_duration")]
    assert longer.blocks >= spent.blocks + 3
    assert longer.block_logs[: spent.blocks] == spent.block_logs
    assert longer.pairs == 2 * spent.quads_per_block * longer.blocks


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
        deserialize_program(StoredProgram(stored.data[: len(stored.data) // 2], stored.serialized_bytes))
    with pytest.raises(ProgramUnreadable, match="its record says 12"):
        deserialize_program(StoredProgram(stored.data, 12))
    with pytest.raises(ProgramUnreadable, match="not base64"):
        StoredProgram.from_text("not base64 at all!", stored.serialized_bytes)
    garbage = b"\x00" * 64
    with pytest.raises(ProgramUnreadable, match="cannot read the stored program"):
        deserialize_program(StoredProgram(zlib.compress(garbage), len(garbage)))


def test_a_sharded_program_keeps_its_devices(jaxperf_pytester: pytest.Pytester) -> None:
    # Eight virtual CPU devices need a fresh process: the device count is fixed when jax starts.
    jaxperf_pytester.makeini("[pytest]\naddopts = -p no:cacheprovider\njaxperf_cpu_devices = 8\n")
    jaxperf_pytester.makepyfile(
        """
        import jax
        import jax.numpy as jnp
        import numpy as np
        from flax import nnx

        from pytest_jaxperf.core.export import DEFAULT_LIMIT_BYTES, deserialize_program, export_program
        from pytest_jaxperf.core.placement import batch_mesh
        from pytest_jaxperf.core.wrap import wrap_model


        def test_sharded():
            model = nnx.Linear(32, 16, rngs=nnx.Rngs(0))
            wrapped = wrap_model(model, jit=True, mesh=batch_mesh(8))
            x = jnp.ones((16, 32))
            exported = deserialize_program(export_program(wrapped, (x,), DEFAULT_LIMIT_BYTES))
            assert exported.nr_devices == 8
            out = exported.call(jax.tree_util.tree_leaves(wrapped.params), *wrapped.place(x))
            np.testing.assert_allclose(np.asarray(out), np.asarray(wrapped(x)), rtol=1e-6)
        """
    )
    expect(jaxperf_pytester, passed=1)


RECORDED = """
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    import pytest_jaxperf as jaxperf


    class Decoder(nnx.Module):
        def __init__(self, *, rngs):
            self.hidden = nnx.Linear(32, 128, rngs=rngs)
            self.out = nnx.Linear(128, 64, rngs=rngs)

        def __call__(self, x):
            return nnx.sigmoid(self.out(nnx.relu(self.hidden(x))))


    def with_host_callback(x):
        return jax.pure_callback(np.sin, jax.ShapeDtypeStruct(x.shape, x.dtype), x)


    @jaxperf.jit_warm
    def test_decoder(jaxperf):
        jaxperf.check(Decoder(rngs=nnx.Rngs(0)), jnp.ones((16, 32)))


    @jaxperf.jit_warm
    def test_callback(jaxperf):
        jaxperf.check(with_host_callback, jnp.ones((16, 32)))
"""


def test_recording_stores_each_checks_program_or_says_why_not(jaxperf_pytester: pytest.Pytester) -> None:
    jaxperf_pytester.makeini("[pytest]\naddopts = -p no:cacheprovider\njaxperf_budget = 0.1\n")
    jaxperf_pytester.makepyfile(test_recorded=RECORDED)
    record = ("--jaxperf-update-baselines", "--jaxperf-repeat=1", "-p", "no:randomly")
    expect(
        jaxperf_pytester,
        *record,
        passed=2,
        lines=[
            "*jaxperf: 1 program(s) stored with their baselines, * compressed in all (largest "
            "test_recorded.py::test_decoder::Decoder: *)",
            "*jaxperf: test_recorded.py::test_callback::with_host_callback: no program stored: jax.export "
            "refused it: *",
        ],
    )
    (path,) = jaxperf_pytester.path.glob("baselines/*/test_recorded.py-*.json")
    records = json.loads(path.read_text())["records"]
    program = records["test_decoder::Decoder"]["program"]
    assert program["format"] == "jax.export+zlib+base64"
    assert "refused it" in records["test_callback::with_host_callback"]["program"]["unavailable"]
    # What was stored is the program that was measured: it computes what the model computes.
    stored = StoredProgram.from_text(program["data"], program["serialized_bytes"])
    assert len(stored.data) == program["stored_bytes"]
    wrapped = wrap_model(Decoder(rngs=nnx.Rngs(0)), jit=True)
    x = jnp.ones((16, 32))
    replayed = deserialize_program(stored).call(jax.tree_util.tree_leaves(wrapped.params), x)
    np.testing.assert_allclose(np.asarray(replayed), np.asarray(wrapped(x)), rtol=1e-6)

    # Over the ini limit: the baseline is recorded, its program is not, and the record says why.
    jaxperf_pytester.makeini(
        "[pytest]\naddopts = -p no:cacheprovider\njaxperf_budget = 0.1\njaxperf_program_limit = 100B\n"
    )
    expect(
        jaxperf_pytester,
        *record,
        passed=2,
        lines=[
            "*test_decoder::Decoder: no program stored: its exported program is * bytes, "
            "over the limit of 100*"
        ],
    )
    records = json.loads(path.read_text())["records"]
    assert "over the limit of 100" in records["test_decoder::Decoder"]["program"]["unavailable"]


def test_a_bad_program_limit_is_a_usage_error_naming_it(jaxperf_pytester: pytest.Pytester) -> None:
    jaxperf_pytester.makeini("[pytest]\njaxperf_program_limit = lots\n")
    jaxperf_pytester.makepyfile("def test_nothing():\n    pass\n")
    result = jaxperf_pytester.runpytest_subprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*jaxperf: jaxperf_program_limit: cannot read 'lots' as a size*"])
