"""@jaxperf.devices on 8 virtual CPU devices: really sharded, equal to one device, else skipped or failed."""

from __future__ import annotations

import pytest

from .conftest import expect


@pytest.fixture
def eight_devices(jaxperf_pytester: pytest.Pytester) -> pytest.Pytester:
    jaxperf_pytester.makeini(
        "[pytest]\naddopts = -p no:cacheprovider\njaxperf_cpu_devices = 8\njaxperf_budget = 0.2\n"
    )
    return jaxperf_pytester


def test_sharded_cases_pass_skip_and_fail_clearly(eight_devices: pytest.Pytester) -> None:
    eight_devices.makepyfile(
        """
        import jax
        import jax.numpy as jnp
        from flax import nnx
        import pytest_jaxperf as jaxperf
        from models import Decoder, mlp, mlp_params

        @jaxperf.jit_warm
        @jaxperf.devices(1, 2, 8, 16)
        def test_decoder(jaxperf):
            jaxperf.check(Decoder(rngs=nnx.Rngs(0)), jnp.ones((64, 32)))
            out = jaxperf.wrap(Decoder(rngs=nnx.Rngs(1)))(jnp.ones((64, 32)))
            assert len(out.sharding.device_set) == jaxperf.variant.devices

        @jaxperf.devices(8)
        def test_function_with_params(jaxperf):
            jaxperf.check(mlp, jnp.ones((16, 32)), params=mlp_params())

        @jaxperf.devices(8)
        def test_ragged_batch(jaxperf):
            jaxperf.check(mlp, jnp.ones((12, 32)), params=mlp_params())

        @jaxperf.devices(8)
        def test_scalar_input(jaxperf):
            # A 0-d array has no batch axis to split: every device gets it.
            jaxperf.check(lambda x, t: x * t, jnp.ones((16, 4)), jnp.float32(2.0))

        @jaxperf.devices(2, platform="gpu")
        def test_gpu_only(jaxperf):
            jaxperf.check(mlp, jnp.ones((16, 32)), params=mlp_params())
        """
    )
    result = expect(
        eight_devices,
        "-rs",
        "--jaxperf",
        passed=5,
        skipped=2,
        failed=1,
        lines=[
            "jaxperf: backend cpu, 8 device(s) (8× cpu)*",
            "jaxperf d8: input [0] has a batch of 12 along axis 0, which does not divide among 8 devices*",
        ],
    )
    result.stdout.fnmatch_lines(
        [
            "*test_decoder?d8?*fp32-d8*Decoder*",
            "SKIPPED*jaxperf d16: needs 16 cpu devices, 8 available (on the CPU, --jaxperf-cpu-devices*",
            "SKIPPED*jaxperf d2: needs platform gpu, running on cpu",
        ]
    )


def test_changing_the_sharding_recompiles_with_the_reason(eight_devices: pytest.Pytester) -> None:
    eight_devices.makepyfile(
        """
        import jax
        import jax.numpy as jnp
        from jax.sharding import NamedSharding, PartitionSpec
        import pytest_jaxperf as jaxperf
        from models import mlp, mlp_params

        @jaxperf.jit_warm
        @jaxperf.devices(8)
        def test_then_replicated(jaxperf):
            params = mlp_params()
            jaxperf.check(mlp, jnp.ones((16, 32)), params=params)
            model = jaxperf.wrap(mlp, params=params)
            replicated = NamedSharding(model.mesh, PartitionSpec())
            model.run(jax.device_put(jnp.ones((16, 32)), replicated))
        """
    )
    expect(
        eight_devices,
        failed=1,
        lines=[
            "*RecompileError: jit(mlp) compiled 2 times*",
            "*x: f32[16,32] on 8 devices [cpu:0…cpu:7] as P('batch',) → f32[16,32] on 8 devices "
            "[cpu:0…cpu:7] as P() (device/sharding *",
        ],
    )


def test_cpu_devices_option_after_a_backend_started_is_a_clear_error(
    jaxperf_pytester: pytest.Pytester,
) -> None:
    # A plugin that runs a jax operation while loading starts the backend before jaxperf can act.
    jaxperf_pytester.makepyfile(early_plugin="import jax.numpy as jnp\njnp.ones(3).block_until_ready()\n")
    result = jaxperf_pytester.runpytest_subprocess("-p", "early_plugin", "--jaxperf-cpu-devices=4")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*jaxperf_cpu_devices: jax started its backends before pytest-jaxperf could provide 4 CPU devices*"]
    )


def test_float32_tolerance_follows_the_backends_matmul_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    import jax

    from pytest_jaxperf.checks import sharding

    assert sharding.float32_tolerance() == 1e-5  # XLA:CPU computes float32 matmuls in float32
    # A GPU computes them in TF32 unless told otherwise, a TPU in one bfloat16 pass.
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert sharding.float32_tolerance() == 5e-3
    monkeypatch.setattr(jax, "default_backend", lambda: "tpu")
    assert sharding.float32_tolerance() == 2e-2
    with jax.default_matmul_precision("highest"):
        assert sharding.float32_tolerance() == 1e-5
