"""Unit tests of the precision pieces: metrics, the quantizer, the audit, the generated inputs."""

from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pytest_jaxperf.checks.audit import audit, compiled_matmul_types
from pytest_jaxperf.checks.fidelity import floor_for
from pytest_jaxperf.checks.outputs import WORST_CHANNEL_FLOOR_DB, compare, output_problem
from pytest_jaxperf.checks.strategies import FLOAT16_MAX, InputCase, build_inputs
from pytest_jaxperf.core.program import cast_floating, trace
from pytest_jaxperf.optimize.quantize import QuantizationError, quantize_int8, quantize_symmetric
from pytest_jaxperf.specs import MarkerError, parse_dtype

RNG = np.random.default_rng(0)


# --- metrics ---------------------------------------------------------------------------------------------


def test_sqnr_is_the_signal_to_error_norm_ratio_in_db() -> None:
    reference = RNG.standard_normal((32, 8))
    noise = RNG.standard_normal((32, 8))
    noise *= 0.01 * np.linalg.norm(reference) / np.linalg.norm(noise)  # exactly 40 dB below
    result = compare(reference, reference + noise)
    assert result.sqnr_db == pytest.approx(40.0, abs=1e-9)
    assert result.rel_l2 == pytest.approx(0.01)
    assert result.nonfinite == 0


def test_cosine_is_blind_to_scale_and_sqnr_is_not() -> None:
    reference = RNG.standard_normal((16, 4))
    result = compare(reference, 127 * reference)  # a forgotten /127
    assert result.cosine == pytest.approx(1.0)
    assert result.sqnr_db == pytest.approx(-20 * math.log10(126), abs=1e-9)
    assert output_problem(result, "int8", 30.0) is not None


def test_a_destroyed_channel_fails_while_the_output_sqnr_passes() -> None:
    reference = RNG.standard_normal((64, 64))
    reference[:, 0] *= 50  # one dominant channel
    output = reference.copy()
    output[:, 5] = 0.0  # channel 5 destroyed
    result = compare(reference, output)
    assert result.sqnr_db > 30.0
    assert result.worst_channel == 5
    # measured against a tenth of the mean channel energy (the dominant channel lifts the mean)
    energy = np.sum(reference**2, axis=0)
    assert result.worst_channel_db == pytest.approx(10 * math.log10(0.1 * np.mean(energy) / energy[5]))
    floor = WORST_CHANNEL_FLOOR_DB
    assert output_problem(result, "int8", 30.0) == (
        f"output channel 5: SQNR {result.worst_channel_db:.1f} dB < {floor:.1f} dB "
        f"(output SQNR {result.sqnr_db:.1f} dB)"
    )


def test_non_finite_values_where_float32_is_finite_fail_first() -> None:
    reference = np.ones((4, 4))
    output = reference.copy()
    output[1, 2] = np.inf
    output[3, 3] = np.nan
    result = compare(reference, output)
    assert result.nonfinite == 2
    assert output_problem(result, "float16", 45.0) == "2 non-finite output values where float32's are finite"
    assert output_problem(result, "float16", 45.0, finite_only=True) == output_problem(
        result, "float16", 45.0
    )


def test_a_zero_reference_is_judged_by_max_abs_error() -> None:
    zeros = np.zeros((8, 8))
    assert compare(zeros, zeros).zero_signal
    assert output_problem(compare(zeros, zeros + 1e-4), "bfloat16", 30.0) is None
    assert "all zeros" in (output_problem(compare(zeros, zeros + 0.5), "bfloat16", 30.0) or "")


def test_pytrees_are_compared_leaf_by_leaf_with_a_shape_check() -> None:
    a = {"x": RNG.standard_normal((4, 3)), "y": RNG.standard_normal((2,))}
    assert math.isinf(compare(a, a).sqnr_db)
    with pytest.raises(ValueError, match="does not match float32's"):
        compare(a, {"x": a["x"], "y": np.zeros((3,))})


def test_floors_come_from_the_marker_or_the_defaults() -> None:
    assert floor_for("int8", None) == 30.0
    assert floor_for("float16", None) == 45.0
    assert floor_for("int8", 20) == 20.0
    assert floor_for("bfloat16", {"bfloat16": 28.0}) == 28.0
    assert floor_for("int8-dynamic", {"bfloat16": 28.0}) == 25.0


def test_input_scale_is_validated_at_collection() -> None:
    assert parse_dtype(("bf16",), {"input_scale": (1e-2, 10)}).input_scale == (0.01, 10.0)
    for bad in ((10, 1), (0, 1), (1,), "big", (1, True)):
        with pytest.raises(MarkerError, match="input_scale must be"):
            parse_dtype(("bf16",), {"input_scale": bad})


def test_input_kinds_are_validated_at_collection() -> None:
    assert parse_dtype(("bf16",), {}).input_kinds == ("gaussian", "spike", "positive", "constant", "zero")
    assert parse_dtype(("bf16",), {"input_kinds": ["spike", "gaussian"]}).input_kinds == ("spike", "gaussian")
    for bad in ((), ("uniform",), "gaussian", ("gaussian", 1)):
        with pytest.raises(MarkerError, match=r"input_kinds must be a non-empty tuple of gaussian, .*got"):
            parse_dtype(("bf16",), {"input_kinds": bad})


def test_only_the_chosen_input_kinds_are_drawn() -> None:
    from hypothesis import given, settings

    from pytest_jaxperf.checks.strategies import input_cases

    seen = set()

    @settings(max_examples=60, database=None, deadline=None)
    @given(case=input_cases("bfloat16", False, (1e-3, 1e3), ("gaussian", "spike")))
    def draw(case):
        seen.add(case.kind)

    draw()
    assert seen == {"gaussian", "spike"}


# --- quantization ----------------------------------------------------------------------------------------


def test_symmetric_quantization_is_per_channel_clipped_and_safe_on_zero_channels() -> None:
    weight = np.array([[1.0, 0.0, -0.5], [-2.0, 0.0, 0.25]], np.float32)
    codes, scale = quantize_symmetric(weight, (0,))
    assert codes.dtype == np.int8
    assert scale.shape == (1, 3)
    assert scale[0, 1] == 1.0  # a zero channel: scale 1, no 0/0
    np.testing.assert_array_equal(codes[:, 1], [0, 0])
    np.testing.assert_array_equal(np.max(np.abs(codes), axis=0), [127, 0, 127])


def _two_layer(params: dict[str, jax.Array], x: jax.Array) -> jax.Array:
    return jax.nn.gelu(x @ params["w1"] + params["b1"]) @ params["w2"]


def _params() -> dict[str, jax.Array]:
    k1, k2 = jax.random.split(jax.random.key(0))
    return {
        "w1": jax.random.normal(k1, (32, 64)) / 32**0.5,
        "b1": jnp.zeros((64,)),
        "w2": jax.random.normal(k2, (64, 8)) / 8.0,
    }


@pytest.mark.parametrize(("dynamic", "operands"), [(False, ("float32", "int8")), (True, ("int8", "int8"))])
def test_int8_stores_a_quarter_of_the_bytes_and_matmuls_on_int8(
    dynamic: bool, operands: tuple[str, str]
) -> None:
    params = _params()
    x = jax.random.normal(jax.random.key(1), (16, 32))
    quantized = quantize_int8(_two_layer, x, params=params, dynamic=dynamic)
    float_bytes = sum(int(np.asarray(v).nbytes) for v in params.values())
    assert quantized.param_bytes < 0.3 * float_bytes
    assert [layer.name for layer in quantized.layers] == ["w1", "w2"]
    assert compare(_two_layer(params, x), jax.jit(quantized.apply)(quantized.params, x)).sqnr_db > 30.0
    result = audit(trace(quantized.apply, quantized.params, (x,)), "int8-dynamic" if dynamic else "int8")
    assert result.passed, result.failure()
    assert [m.operands for m in result.matmuls] == [operands, operands]
    # another batch size re-traces against the same int8 weights
    assert quantized(jnp.ones((3, 32))).shape == (3, 8)


def test_matmuls_inside_control_flow_are_reported_left_in_float() -> None:
    def scanned(params: dict[str, jax.Array], x: jax.Array) -> jax.Array:
        h = x @ params["w1"]
        h, _ = jax.lax.scan(lambda c, _: (jnp.tanh(c @ params["loop"]), None), h, None, length=2)
        return h

    params = {"w1": jnp.ones((4, 4)), "loop": jnp.eye(4)}
    quantized = quantize_int8(scanned, jnp.ones((2, 4)), params=params)
    assert [layer.name for layer in quantized.layers] == ["w1"]
    assert [layer.reason for layer in quantized.left_in_float] == [
        "inside scan, which the quantizer does not open"
    ]


def test_nothing_to_quantize_is_an_error_naming_the_model() -> None:
    def no_weights(x: jax.Array) -> jax.Array:
        return jnp.tanh(x)

    with pytest.raises(QuantizationError, match="no_weights has no matmul or convolution"):
        quantize_int8(no_weights, jnp.ones((2, 4)))


def test_weight_matmuls_all_out_of_reach_are_said_to_be_so() -> None:
    def only_scanned(params: dict[str, jax.Array], x: jax.Array) -> jax.Array:
        h, _ = jax.lax.scan(lambda c, _: (jnp.tanh(c @ params["loop"]), None), x, None, length=2)
        return h

    with pytest.raises(QuantizationError) as raised:
        quantize_int8(only_scanned, jnp.ones((2, 4)), params={"loop": jnp.eye(4)})
    assert str(raised.value).startswith(
        "only_scanned's weight matmuls are all out of the built-in int8 quantizer's reach "
        "(?: inside scan, which the quantizer does not open)"
    )


# --- audit -----------------------------------------------------------------------------------------------


def test_casting_the_input_only_leaves_float32_matmuls() -> None:
    params = _params()
    x = jnp.ones((4, 32))

    def input_cast_only(params: dict[str, jax.Array], x: jax.Array) -> jax.Array:
        return _two_layer(params, x.astype(jnp.bfloat16))

    result = audit(trace(input_cast_only, params, (x,)), "bfloat16")
    assert result.failure() == "2 of 2 matmuls run in float32: w1, w2"
    real = audit(
        trace(_two_layer, cast_floating(params, jnp.bfloat16), (x.astype(jnp.bfloat16),)), "bfloat16"
    )
    assert real.passed
    assert real.summary() == "2 matmuls: 2 bfloat16×bfloat16"


def test_compiled_hlo_matmuls_are_counted_by_result_dtype() -> None:
    hlo = """
      %dot.1 = f32[2,3]{1,0} dot(%a, %b), lhs_contracting_dims={1}
      %convolution.2 = s32[1,5,5,4]{3,2,1,0} convolution(%c, %d), window={size=3x3}
      %custom-call.3 = (bf16[8,8]{1,0}, s8[64]{0}) custom-call(%e, %f), custom_call_target="__cublas$gemm"
      %custom-call.4 = f32[8]{0} custom-call(%g), custom_call_target="Sharding"
    """
    assert compiled_matmul_types(hlo) == {"float32": 1, "int32": 1, "bfloat16": 1}


# --- generated inputs ------------------------------------------------------------------------------------


def test_generated_inputs_keep_shapes_dtypes_and_masks_and_draw_integers_within_their_range() -> None:
    tokens = np.arange(6, dtype=np.int32).reshape(2, 3) + 10  # ids 10…15
    mask = np.array([True, False])
    example = (np.zeros((4, 8), np.float32), tokens, mask)
    case = InputCase("spike", seed=3, log10_scale=2.0, spike=9)
    values, ids, same_mask = build_inputs(case, example)
    assert values.shape == (4, 8)
    assert values.dtype == np.float32
    assert values.flat[9] == pytest.approx(100 * 1e2)
    assert case.describe((4, 8)) == "scale 1e2, spike ×100 at [1, 1]"
    assert same_mask is mask
    assert ids.dtype == np.int32
    assert ids.shape == (2, 3)
    assert ids.min() >= 10
    assert ids.max() == 15  # the spike is the highest id
    # The edges themselves, and a declared range.
    (lowest,) = build_inputs(InputCase("zero", 0, 0.0), (tokens,))
    np.testing.assert_array_equal(lowest, np.full((2, 3), 10))
    (highest,) = build_inputs(InputCase("constant", 1, 0.0), (tokens,), int_range=(0, 511))
    np.testing.assert_array_equal(highest, np.full((2, 3), 511))
    (uniform,) = build_inputs(InputCase("gaussian", 5, 0.0), (np.zeros((64,), np.int32),), int_range=(0, 511))
    assert 0 <= uniform.min() < uniform.max() <= 511


def test_float16_inputs_are_clipped_to_float16s_range() -> None:
    case = InputCase("constant", seed=1, log10_scale=6.0)
    (values,) = build_inputs(case, (np.zeros((3,), np.float32),), limit=FLOAT16_MAX)
    np.testing.assert_array_equal(values, [FLOAT16_MAX] * 3)
    (zeros,) = build_inputs(InputCase("zero", 0, 0.0), (np.ones((2, 2), np.float32),))
    assert not np.any(zeros)


def test_matmuls_inside_control_flow_are_audited_for_their_dtypes() -> None:
    def looped(params: dict[str, jax.Array], x: jax.Array) -> jax.Array:
        def step(h: jax.Array, _: None) -> tuple[jax.Array, None]:
            # the weight cast up: the matmul runs in float32 inside a bf16 "variant"
            return jnp.tanh(h @ params["w"].astype(jnp.float32)).astype(h.dtype), None

        return jax.lax.scan(step, x, None, length=3)[0]

    params = {"w": jnp.eye(4, dtype=jnp.bfloat16)}
    result = audit(trace(looped, params, (jnp.ones((2, 4), jnp.bfloat16),)), "bfloat16")
    assert result.failure() == "1 of 1 matmuls run in float32: ? (inside scan)"
    int8 = audit(trace(looped, params, (jnp.ones((2, 4), jnp.bfloat16),)), "int8")
    assert int8.passed
    assert int8.summary() == "0 matmuls; 1 inside control flow, weights unknown: ? (inside scan)"


def test_shrinking_a_fidelity_failure_stops_at_its_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_jaxperf.checks import fidelity
    from pytest_jaxperf.core.wrap import wrap_model

    # A variant wrong on every input: hypothesis would shrink it for as long as it can run the models.
    runs: list[float] = []

    def wrong(x: jax.Array) -> jax.Array:
        runs.append(0.0)
        time.sleep(0.01)  # each model run costs time, as a real model's does
        return x * 2.0

    reference = wrap_model(lambda x: x, jit=False)
    x = jnp.linspace(-1.0, 1.0, 64).reshape(8, 8)

    def shrink_runs(budget: float) -> tuple[int, str]:
        monkeypatch.setattr(fidelity, "SHRINK_SECONDS", budget)
        runs.clear()
        result = fidelity.check_fidelity(
            reference,
            wrap_model(wrong, jit=False),
            (x,),
            dtype="bfloat16",
            floor_db=30.0,
            max_examples=20,
            # A key of its own each time: no earlier run's shrunk example replays first.
            database_key=f"shrink-budget-{budget}-{time.time()}",
        )
        assert result.failure is not None
        return len(runs), result.failure

    unbounded, _ = shrink_runs(60.0)
    bounded, message = shrink_runs(0.0)
    # Out of budget, no model runs more: the failures already found end the search.
    assert bounded < unbounded
    cost = message.rsplit("\ncost: ", 1)[1]
    assert "shrinking" in cost
    assert "budget" in cost


def test_a_variant_failing_in_the_plugins_code_is_the_plugins_error_never_the_models() -> None:
    from pytest_jaxperf.core.wrap import wrap_model
    from pytest_jaxperf.failures import run_failure
    from pytest_jaxperf.optimize.batching import bucket_for
    from pytest_jaxperf.specs import Variant

    bfloat16 = Variant(dtype="bfloat16")
    wrapped = wrap_model(lambda x: x, jit=False, name="Model")

    def models_own_code() -> None:
        raise TypeError("dtypes differ")

    with pytest.raises(TypeError) as raised:
        models_own_code()
    # The model's own error names the variant as failed, at the model's line.
    message = run_failure(raised.value, bfloat16, wrapped, ())
    assert message.startswith("the bfloat16 variant of Model failed: TypeError: dtypes differ")
    assert f"{__file__}:" in message
    assert "models_own_code" in message

    with pytest.raises(ValueError, match="exceeds the largest bucket") as raised_in_plugin:
        bucket_for(9, (1, 8))
    # Raised in the plugin's code: its own traceback, never dressed as the model's failure.
    with pytest.raises(ValueError, match="exceeds the largest bucket") as reraised:
        run_failure(raised_in_plugin.value, bfloat16, wrapped, ())
    assert reraised.value is raised_in_plugin.value
