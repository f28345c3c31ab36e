"""@jaxperf.jit_warm end to end: a stable model passes; each cause of a recompile fails, named."""

from __future__ import annotations

import textwrap

import pytest

from .conftest import expect


def test_stable_models_pass_and_compile_once(jaxperf_pytester: pytest.Pytester) -> None:
    jaxperf_pytester.makepyfile(
        """
        import jax
        import jax.numpy as jnp
        from flax import nnx
        import pytest
        import pytest_jaxperf as jaxperf
        from models import Decoder, mlp, mlp_params

        @jaxperf.jit_warm
        def test_decoder(jaxperf):
            record = jaxperf.check(Decoder(rngs=nnx.Rngs(0)), jnp.zeros((64, 32)))
            assert record.compiles == 1
            assert record.model == "Decoder"
            assert len(record.steady_call_seconds) == 1
            assert record.compile_seconds > 0

        @jaxperf.jit_warm(warmup=4)
        def test_pure_function_with_params(jaxperf):
            record = jaxperf.check(mlp, jnp.ones((8, 32)), params=mlp_params())
            assert record.compiles == 1 and len(record.steady_call_seconds) == 3

        @pytest.mark.jaxperf_jit_warm(max_compiles=1)
        def test_wrapped_model_reused(jaxperf):
            model = jaxperf.wrap(Decoder(rngs=nnx.Rngs(0)))
            for _ in range(5):
                out = model(jnp.zeros((64, 32)))
            assert out.shape == (64, 784)
            assert model.watched.calls == 5 and len(model.watched.compiles) == 1

        def test_no_marker_runs_eagerly(jaxperf):
            record = jaxperf.check(Decoder(rngs=nnx.Rngs(0)), jnp.zeros((4, 32)))
            assert not record.jit and record.compiles == 0
        """
    )
    expect(jaxperf_pytester, passed=4)


def test_two_batch_sizes_fail_naming_both_shapes(jaxperf_pytester: pytest.Pytester) -> None:
    jaxperf_pytester.makepyfile(
        """
        import jax.numpy as jnp
        from flax import nnx
        import pytest_jaxperf as jaxperf
        from models import Decoder

        @jaxperf.jit_warm
        def test_two_batches(jaxperf):
            model = Decoder(rngs=nnx.Rngs(0))
            jaxperf.check(model, jnp.zeros((64, 32)))
            decode = jaxperf.wrap(model)
            decode(jnp.zeros((64, 32)))
            decode(jnp.zeros((128, 32)))
        """
    )
    expect(
        jaxperf_pytester,
        failed=1,
        lines=[
            "*RecompileError: jit(Decoder) compiled 2 times, more than max_compiles=1*",
            "*first compile, with z: f32[64,32] on cpu:0",
            "*z: f32[64,32] on cpu:0 → f32[128,32] on cpu:0 (shape [64, 32] → [128, 32])",
            # The traceback ends at the user's offending call, not inside jaxperf.
            "test_two_batch_sizes_fail_naming_both_shapes.py:12: RecompileError",
        ],
    )


def test_python_float_where_an_array_was(jaxperf_pytester: pytest.Pytester) -> None:
    jaxperf_pytester.makepyfile(
        """
        import jax.numpy as jnp
        import pytest_jaxperf as jaxperf

        def scale(x, factor):
            return x * factor

        @jaxperf.jit_warm
        def test_weak_type(jaxperf):
            jaxperf.check(scale, jnp.ones((8,)), jnp.ones((8,)))
            jaxperf.wrap(scale)(jnp.ones((8,)), 2.0)
        """
    )
    expect(
        jaxperf_pytester,
        failed=1,
        lines=[
            "*factor: Python float 2.0 now, f32[8] on cpu:0 before — a Python scalar is traced as a "
            "weak-typed 0-d array*"
        ],
    )


def test_static_keyword_argument(jaxperf_pytester: pytest.Pytester) -> None:
    jaxperf_pytester.makepyfile(
        """
        import functools
        import jax
        import jax.numpy as jnp
        import pytest_jaxperf as jaxperf

        @functools.partial(jax.jit, static_argnames="steps")
        def refine(x, steps=2):
            for _ in range(steps):
                x = jnp.sin(x)
            return x

        @jaxperf.jit_warm
        def test_static_value_changes(jaxperf):
            jaxperf.check(refine, jnp.ones((8,)))
            jaxperf.wrap(refine)(jnp.ones((8,)), steps=3)

        # Its own function: compiles are per process, and refine is warm after the test above.
        @functools.partial(jax.jit, static_argnames="steps")
        def smooth(x, steps=2):
            return refine(x, steps)

        @jaxperf.jit_warm
        def test_keyword_versus_default(jaxperf):
            jaxperf.check(smooth, jnp.ones((8,)))
            jaxperf.wrap(smooth)(jnp.ones((8,)), steps=2)
        """
    )
    expect(
        jaxperf_pytester,
        failed=2,
        lines=[
            "*steps: value changed int 2 → int 3 (a static argument: every distinct value compiles*",
            "*steps: by keyword now, left at its default before — JAX keys its cache on how an argument "
            "is passed*",
        ],
    )


def test_input_moved_to_another_device(jaxperf_pytester: pytest.Pytester) -> None:
    jaxperf_pytester.makeconftest(
        """
        import jax
        jax.config.update("jax_num_cpu_devices", 2)
        """
    )
    jaxperf_pytester.makepyfile(
        """
        import jax
        import jax.numpy as jnp
        from flax import nnx
        import pytest_jaxperf as jaxperf
        from models import Decoder

        @jaxperf.jit_warm
        def test_moved(jaxperf):
            model = Decoder(rngs=nnx.Rngs(0))
            z = jax.device_put(jnp.zeros((64, 32)), jax.devices()[0])
            jaxperf.check(model, z)
            decode = jaxperf.wrap(model)
            decode(z)
            decode(jax.device_put(z, jax.devices()[1]))
        """
    )
    expect(
        jaxperf_pytester,
        failed=1,
        lines=["*z: f32[64,32] on cpu:0 → f32[64,32] on cpu:1 (device/sharding cpu:0 → cpu:1)*"],
    )


def test_nnx_module_whose_structure_changes(jaxperf_pytester: pytest.Pytester) -> None:
    jaxperf_pytester.makepyfile(
        """
        import jax.numpy as jnp
        from flax import nnx
        import pytest
        import pytest_jaxperf as jaxperf
        from models import Decoder

        class Caching(nnx.Module):
            # Adds an attribute the first time it runs: under nnx.jit the second call recompiles.
            def __init__(self, *, rngs):
                self.linear = nnx.Linear(32, 8, rngs=rngs)

            def __call__(self, x):
                y = self.linear(x)
                if not hasattr(self, "last"):
                    self.last = nnx.Variable(y)
                return y

        @jaxperf.jit_warm
        def test_mutates_itself_when_called(jaxperf):
            jaxperf.check(Caching(rngs=nnx.Rngs(0)), jnp.zeros((4, 32)))

        def test_structure_changed_between_calls():
            model = Decoder(rngs=nnx.Rngs(0))
            step = jaxperf.watch_compiles(nnx.jit(lambda m, z: m(z)), max_compiles=1)
            step(model, jnp.zeros((4, 32)))
            model.extra = nnx.Param(jnp.zeros((3,)))
            step(model, jnp.zeros((4, 32)))

        def test_structure_changed_by_the_call_itself():
            # The first call adds m.last: its compile describes the module as it was passed, without it,
            # and the second call's compile names the new variable.
            step = jaxperf.watch_compiles(nnx.jit(lambda m, z: m(z)))
            model = Caching(rngs=nnx.Rngs(0))
            step(model, jnp.zeros((4, 32)))
            step(model, jnp.zeros((4, 32)))
            first, second = step.compiles
            assert not [path for path in first.signature if "last" in path]
            assert second.reasons == ("m.last: new Variable f32[4,8] (the module's structure changed)",)
        """
    )
    expect(
        jaxperf_pytester,
        failed=2,
        passed=1,
        lines=[
            "*jaxperf *: Caching changes its own structure when called (added last*"
            "Under nnx.jit a call that changes it compiles again*call the model once before checking it*",
            "*m.extra: new Param f32[3] (the module's structure changed)*",
        ],
    )


def test_guide_chunked_activation_compression_loop(jaxperf_pytester: pytest.Pytester) -> None:
    # The guide's "activation compression": run the model chunk by chunk over the batch. With a batch
    # of 100 and chunks of 32, the last chunk has 4 rows and compiles a second program.
    jaxperf_pytester.makepyfile(
        """
        import jax.numpy as jnp
        from flax import nnx
        import pytest_jaxperf as jaxperf
        from models import Decoder

        def compressed_forward(model, z, chunk_size=32):
            outputs = []
            for start in range(0, z.shape[0], chunk_size):
                outputs.append(model(z[start:start + chunk_size]))
            return jnp.concatenate(outputs)

        @jaxperf.jit_warm
        def test_chunked(jaxperf):
            decode = jaxperf.wrap(Decoder(rngs=nnx.Rngs(0)))
            compressed_forward(decode, jnp.zeros((100, 32)))
        """
    )
    expect(
        jaxperf_pytester,
        failed=1,
        lines=[
            "*compile 2 of Decoder, at call 4*",
            "*z: f32[32,32] on cpu:0 → f32[4,32] on cpu:0 (shape [32, 32] → [4, 32])*",
        ],
    )


def test_a_swallowed_recompile_error_still_fails(jaxperf_pytester: pytest.Pytester) -> None:
    jaxperf_pytester.makepyfile(
        """
        import jax.numpy as jnp
        import pytest_jaxperf as jaxperf

        @jaxperf.jit_warm(max_compiles=2)
        def test_swallowed(jaxperf):
            double = jaxperf.wrap(lambda x: x * 2)
            for n in (1, 2, 3):
                try:
                    double(jnp.zeros((n,)))
                except Exception:
                    pass
        """
    )
    expect(
        jaxperf_pytester,
        failed=1,
        lines=["*jaxperf: jit(<lambda>) compiled 3 times, more than max_compiles=2*"],
    )


def test_no_recompile_block_and_max_compiles(jaxperf_pytester: pytest.Pytester) -> None:
    jaxperf_pytester.makepyfile(
        """
        import jax
        import jax.numpy as jnp
        import pytest_jaxperf as jaxperf

        @jax.jit
        def norm(x):
            return x / jnp.linalg.norm(x)

        @jaxperf.jit_warm(max_compiles=2)
        def test_two_buckets_allowed(jaxperf):
            f = jaxperf.wrap(norm)
            f(jnp.ones((8,)))
            f(jnp.ones((16,)))
            with jaxperf.no_recompile(f):
                f(jnp.ones((8,)))
                f(jnp.ones((16,)))

        def test_block_catches_plain_jitted_function(jaxperf):
            norm(jnp.ones((8,)))
            with jaxperf.no_recompile(norm):
                norm(jnp.ones((9,)))
        """
    )
    expect(
        jaxperf_pytester,
        passed=1,
        failed=1,
        lines=[
            "*RecompileError: 1 compile(s) of norm inside a no-recompile block (allowed: 0):",
            "*jit(norm) compiled*",
            "*JAX's own explanation: different input types:*",
        ],
    )


def test_model_of_the_wrong_kind_is_a_type_error(jaxperf_pytester: pytest.Pytester) -> None:
    jaxperf_pytester.makepyfile(
        textwrap.dedent(
            """
            import jax.numpy as jnp
            from flax import nnx
            import pytest
            import pytest_jaxperf as jaxperf
            from models import Decoder

            @pytest.mark.parametrize(
                "model, params, message",
                [
                    ("not a model", None, "got str 'not a model', which is not callable"),
                    (Decoder, None, "got the class Decoder, not an instance: pass Decoder(...)"),
                    (Decoder(rngs=nnx.Rngs(0)), {"w": 1}, "params= was given with the flax.nnx.Module"),
                ],
                ids=["string", "class", "module-with-params"],
            )
            @jaxperf.jit_warm
            def test_rejects(jaxperf, model, params, message):
                with pytest.raises(TypeError, match="jaxperf accepts|params= was given") as info:
                    jaxperf.check(model, jnp.zeros((4, 32)), params=params)
                assert message in str(info.value)

            def test_needs_inputs(jaxperf):
                with pytest.raises(TypeError, match="needs at least one example input"):
                    jaxperf.check(lambda: 1)
            """
        )
    )
    expect(jaxperf_pytester, passed=4)
