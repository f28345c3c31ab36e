"""``@jaxperf.memory``, out-of-memory errors, and the memory-saving optimizations."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_jaxperf.core.memory import MemoryBreakdown
from pytest_jaxperf.core.wrap import wrap_model
from pytest_jaxperf.failures import out_of_memory_message
from pytest_jaxperf.optimize.memory import (
    chunked,
    donating,
    fitting_boundary,
    max_batch_size,
    memory_at_batch,
    rematerialized,
)
from pytest_jaxperf.units import format_bytes

from .conftest import expect

#: A model that leaves a file behind whenever it really runs (a host callback inside the compiled program).
TRIPWIRE = """
import pathlib

import jax
import jax.numpy as jnp
from flax import nnx


def _ran(_):
    pathlib.Path("model-ran").write_text("the model was executed")


class Tripwire(nnx.Module):
    def __init__(self, *, rngs):
        self.linear = nnx.Linear(32, 1024, rngs=rngs)

    def __call__(self, x):
        jax.debug.callback(_ran, x[0, 0])
        return self.linear(x)
"""


def test_over_budget_fails_before_running_under_budget_passes(jaxperf_pytester: pytest.Pytester) -> None:
    jaxperf_pytester.makepyfile(tripwire=TRIPWIRE)
    jaxperf_pytester.makepyfile(
        """
        import pathlib

        import jax.numpy as jnp
        from flax import nnx

        import pytest_jaxperf as jaxperf
        from tripwire import Tripwire


        @jaxperf.jit_warm
        @jaxperf.memory(max_bytes="8MiB")
        def test_over(jaxperf):
            jaxperf.check(Tripwire(rngs=nnx.Rngs(0)), jnp.zeros((4096, 32)))


        def test_it_never_ran():
            assert not pathlib.Path("model-ran").exists()


        @jaxperf.memory(max_bytes="64MiB")
        def test_under(jaxperf):
            record = jaxperf.check(Tripwire(rngs=nnx.Rngs(0)), jnp.zeros((4096, 32)))
            assert pathlib.Path("model-ran").exists()
            print("MEMORY", record.memory["budget_bytes"], record.memory["compiled"]["total"])
        """
    )
    result = expect(
        jaxperf_pytester,
        "-p",
        "no:randomly",
        "-s",
        failed=1,
        passed=2,
        lines=[
            "*MEMORY 67108864 1*",
            "*jaxperf fp32-d1: Tripwire needs 16.6 MiB of device memory, over its budget of 8.0 MiB "
            "(17,* > 8,388,608 bytes): arguments 644.0 KiB, outputs 16.0 MiB, temporaries *; inputs "
            "[0]: f32[4096,32]*. Nothing was run.",
        ],
    )
    # The failure is its message alone: no second copy chained to it.
    result.stdout.no_fnmatch_line("*During handling of the above exception*")


def test_a_real_out_of_memory_fails_one_test_and_the_session_goes_on(
    jaxperf_pytester: pytest.Pytester,
) -> None:
    # The address space of the test process is capped 2 GiB above what it uses once jax is up: an
    # allocation of 8 GiB then fails for real, as it would on a full GPU.
    jaxperf_pytester.makeconftest(
        """
        import resource

        import jax


        def pytest_configure(config):
            jax.devices()
            with open("/proc/self/status") as status:
                used = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize"))
            resource.setrlimit(resource.RLIMIT_AS, (used + 2 * 1024**3, resource.RLIM_INFINITY))
        """
    )
    jaxperf_pytester.makepyfile(
        """
        import jax.numpy as jnp

        import pytest_jaxperf as jaxperf


        def outer(x):
            return jnp.outer(x, x)  # 45000² float32: 7.5 GiB


        @jaxperf.jit_warm
        def test_too_big(jaxperf):
            jaxperf.check(outer, jnp.ones((45000,)))


        @jaxperf.jit_warm
        def test_next_one_runs(jaxperf):
            jaxperf.check(outer, jnp.ones((1000,)))


        def host_hungry(x):
            raise MemoryError()


        def test_host_memory(jaxperf):
            jaxperf.check(host_hungry, jnp.ones((3,)))
        """
    )
    expect(
        jaxperf_pytester,
        "-p",
        "no:randomly",
        failed=2,
        passed=1,
        lines=[
            "*jaxperf fp32-d1: out of memory on cpu:0: tried to allocate 7.5 GiB in jit_outer; "
            "variant fp32-d1; inputs [0]: f32[45000]*; compiled needs: arguments 175.8 KiB, outputs 7.5 GiB, "
            "temporaries 0 B",
            "*RESOURCE_EXHAUSTED*",
            "*jaxperf fp32-d1: out of host memory (MemoryError) in host_hungry; variant fp32-d1*",
        ],
    )


# --- plain units ----------------------------------------------------------------------------------------


class Mlp(nnx.Module):
    def __init__(self, *, rngs: nnx.Rngs) -> None:
        self.up = nnx.Linear(32, 256, rngs=rngs)
        self.down = nnx.Linear(256, 16, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.down(nnx.relu(self.up(x)))


def test_max_batch_size_is_the_boundary_and_a_confirming_run_agrees() -> None:
    model = Mlp(rngs=nnx.Rngs(0))
    fit = max_batch_size(model, jnp.zeros((8, 32)), "8MiB", confirm=True)
    wrapped = wrap_model(model, jit=False)
    assert fit.confirmed
    assert fit.needs is not None
    assert fit.needs.total <= 8 * 1024**2 < memory_at_batch(wrapped, jnp.zeros((1, 32)), fit.batch + 1).total
    assert fit.first_over == fit.batch + 1
    assert fit.compiles < 2 * np.log2(fit.batch) + 4
    assert max_batch_size(model, jnp.zeros((8, 32)), 1000).batch == 0  # not even the parameters fit


def test_max_batch_size_on_an_autotuning_backend_checks_the_boundary_with_the_real_program(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Here the untuned and the real programs are the same (XLA:CPU does not autotune), so the check
    # agrees in its two compiles; that it moves a wrong estimate is fitting_boundary's test below.
    model = Mlp(rngs=nnx.Rngs(0))
    on_cpu = max_batch_size(model, jnp.zeros((8, 32)), "8MiB")
    assert on_cpu.autotuned_compiles == 0
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    on_gpu = max_batch_size(model, jnp.zeros((8, 32)), "8MiB")
    assert (on_gpu.batch, on_gpu.first_over, on_gpu.needs) == (on_cpu.batch, on_cpu.first_over, on_cpu.needs)
    assert on_gpu.autotuned_compiles == 2
    assert on_gpu.compiles == on_cpu.compiles + 2
    assert "(2 autotuned)" in on_gpu.describe()


@settings(deadline=None, max_examples=300)
@given(
    limit=st.integers(1, 1 << 24),
    largest=st.integers(0, 1 << 24),
    start=st.integers(1, 1 << 24),
)
def test_fitting_boundary_finds_the_boundary_from_any_start(largest: int, start: int, limit: int) -> None:
    calls: list[int] = []

    def fits(batch: int) -> bool:
        assert 1 <= batch <= limit
        calls.append(batch)
        return batch <= largest

    expected = (largest, largest + 1) if largest < limit else (limit, None)
    assert fitting_boundary(fits, start, limit) == expected
    # Stepping out and bisecting each take about log2 of the distance from the start.
    distance = abs(min(largest, limit) - min(start, limit)) + 2
    assert len(calls) <= 2 * np.log2(distance) + 3


def test_fitting_boundary_from_a_good_guess_takes_two_calls() -> None:
    calls: list[int] = []
    assert fitting_boundary(lambda b: calls.append(b) or b <= 1000, 1000, 1 << 24) == (1000, 1001)
    assert calls == [1000, 1001]
    assert fitting_boundary(lambda b: b <= 1000, 1, 1 << 24) == (1000, 1001)


def test_max_batch_size_needs_a_budget_on_the_cpu() -> None:
    with pytest.raises(ValueError, match="reports no memory limit: pass budget="):
        max_batch_size(Mlp(rngs=nnx.Rngs(0)), jnp.zeros((8, 32)))


def test_chunked_equals_unchunked_compiles_once_and_saves_memory() -> None:
    model = Mlp(rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (1000, 32))
    run = chunked(model, 256)
    np.testing.assert_allclose(np.asarray(run(x)), np.asarray(model(x)), rtol=1e-6, atol=1e-6)
    run(x[:300])  # another batch size, another short last chunk: still one program
    assert run.compiles == 1
    whole, chunk = run.memory_saved(x)
    assert chunk.total < whole.total


def test_donation_reports_the_aliased_bytes() -> None:
    class Residual(nnx.Module):
        def __init__(self, *, rngs: nnx.Rngs) -> None:
            self.linear = nnx.Linear(64, 64, rngs=rngs)

        def __call__(self, x: jax.Array) -> jax.Array:
            return x + self.linear(x)

    run = donating(Residual(rngs=nnx.Rngs(0)))
    plain, donated = run.memory_saved(jnp.ones((512, 64)))
    assert plain.aliased == 0
    assert donated.aliased == 512 * 64 * 4  # the output reuses the input's buffer
    assert run(jnp.ones((512, 64))).shape == (512, 64)


def test_rematerialization_saves_nothing_for_inference() -> None:
    model = Mlp(rngs=nnx.Rngs(0))
    wrapped = wrap_model(model, jit=False)
    x = jnp.ones((512, 32))
    assert wrapped.forward is not None
    plain = jax.jit(wrapped.forward).lower(wrapped.params, x).compile().memory_analysis()
    remat = jax.jit(rematerialized(wrapped.forward)).lower(wrapped.params, x).compile().memory_analysis()
    assert remat.temp_size_in_bytes == plain.temp_size_in_bytes


def test_out_of_memory_messages_name_size_limit_and_breakdown() -> None:
    error = RuntimeError(
        "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 168897576960 bytes. "
        "BufferAssignment OOM Debugging. memory limit: 112654843904 bytes"
    )
    breakdown = MemoryBreakdown(arguments=1288490188, outputs=536870912, temporaries=167076757094, aliased=0)
    message = out_of_memory_message(
        error, device="cuda:0", function="jit_decode", variant="bf16-d1", inputs="[0]: f32[16384,32]",
        breakdown=breakdown,
    )  # fmt: skip
    assert message.splitlines()[0] == (
        "out of memory on cuda:0: tried to allocate 157.3 GiB (limit 104.9 GiB) in jit_decode; variant "
        "bf16-d1; inputs [0]: f32[16384,32]; compiled needs: arguments 1.2 GiB, outputs 512.0 MiB, "
        "temporaries 155.6 GiB"
    )
    assert format_bytes(300) == "300 B"


def test_a_budget_without_memory_analysis_is_skipped_saying_why(jaxperf_pytester: pytest.Pytester) -> None:
    # A backend whose compiled programs report no memory (simulated: the CPU's always does).
    jaxperf_pytester.makeconftest(
        """
        import pytest

        from pytest_jaxperf.core import memory


        @pytest.fixture(autouse=True)
        def no_memory_analysis(monkeypatch):
            def unavailable(compiled):
                raise memory.MemoryAnalysisUnavailable("memory_analysis() is not implemented")

            monkeypatch.setattr(memory, "compiled_memory", unavailable)
        """
    )
    jaxperf_pytester.makepyfile(
        """
        import jax.numpy as jnp

        import pytest_jaxperf as jaxperf


        @jaxperf.memory(max_bytes="1GiB")
        def test_budget(jaxperf):
            jaxperf.check(lambda x: x * 2, jnp.ones((4,)))
        """
    )
    expect(
        jaxperf_pytester,
        "-rs",
        skipped=1,
        lines=[
            # The skip is reported at the test's own line, not inside the plugin or the standard library.
            "SKIPPED [1] test_a_budget_without_memory_analysis_is_skipped_saying_why.py:*: jaxperf fp32-d1: "
            "the memory budget cannot be checked: cpu does not report a compiled program's memory "
            "(memory_analysis() is not implemented)"
        ],
    )


def test_out_of_memory_in_a_measured_function_fails_with_its_name(jaxperf_pytester: pytest.Pytester) -> None:
    jaxperf_pytester.makepyfile(
        """
        import jax.numpy as jnp
        import pytest_jaxperf as jaxperf


        def exhausted(*args):
            raise RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 2147483648 bytes")


        def test_measured(jaxperf):
            jaxperf.measure(exhausted, jnp.ones((4, 4)), name="decode")
        """
    )
    expect(
        jaxperf_pytester,
        "--jaxperf",
        failed=1,
        lines=[
            "*jaxperf fp32-d1: out of memory on cpu:0: tried to allocate 2.0 GiB in decode; variant fp32-d1*"
        ],
    )
