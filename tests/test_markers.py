"""The four markers: usable bare, called or as pytest marks; validated at collection; expanded into cases."""

from __future__ import annotations

import pytest

from .conftest import globs, run


def test_markers_bare_called_and_as_pytest_marks(jaxperf_pytester: pytest.Pytester) -> None:
    jaxperf_pytester.makepyfile(
        """
        import pytest
        import pytest_jaxperf as jaxperf

        @jaxperf.jit_warm
        def test_bare(jaxperf):
            assert jaxperf.spec.jit_warm == jaxperf.spec.jit_warm.__class__(warmup=2, max_compiles=1)

        @jaxperf.jit_warm()
        def test_called_empty(jaxperf):
            assert jaxperf.spec.jit_warm.max_compiles == 1

        @jaxperf.jit_warm(warmup=3, max_compiles=2)
        def test_called(jaxperf):
            assert (jaxperf.spec.jit_warm.warmup, jaxperf.spec.jit_warm.max_compiles) == (3, 2)

        @pytest.mark.jaxperf_jit_warm(max_compiles=4)
        def test_pytest_mark(jaxperf):
            assert jaxperf.spec.jit_warm.max_compiles == 4

        @pytest.mark.jaxperf_jit_warm(max_compiles=5)
        class TestClassLevel:
            @jaxperf.jit_warm(max_compiles=6)
            def test_closest_mark_wins(self, jaxperf):
                assert jaxperf.spec.jit_warm.max_compiles == 6

            def test_inherits_class_mark(self, jaxperf):
                assert jaxperf.spec.jit_warm.max_compiles == 5

            def test_without_fixture_is_fine(self):
                pass

        @jaxperf.memory(max_bytes="512MiB")
        def test_memory_spec(jaxperf):
            assert jaxperf.spec.memory.max_bytes == 512 * 1024**2

        def test_default_variant(jaxperf):
            assert jaxperf.variant.id == "fp32-d1"
        """
    )
    result = run(jaxperf_pytester, "--strict-markers")
    result.assert_outcomes(passed=9)


def test_dtype_and_devices_expand_into_cases(jaxperf_pytester: pytest.Pytester) -> None:
    jaxperf_pytester.makepyfile(
        """
        import pytest_jaxperf as jaxperf

        @jaxperf.dtype("bf16", "float16", "int8", "int8-dynamic")
        def test_dtypes(jaxperf):
            assert jaxperf.variant.devices == 1

        @jaxperf.devices(1, 2, 8)
        def test_devices(jaxperf):
            assert jaxperf.variant.dtype == "float32"

        @jaxperf.dtype("fp32", "bf16")
        @jaxperf.devices(1, 8)
        def test_both(jaxperf, jaxperf_variant):
            assert jaxperf.variant is jaxperf_variant
        """
    )
    result = run(jaxperf_pytester, "--collect-only", "-q")
    result.stdout.fnmatch_lines(
        globs(
            "test_dtype_and_devices_expand_into_cases.py::test_dtypes[bf16]",
            "test_dtype_and_devices_expand_into_cases.py::test_dtypes[fp16]",
            "test_dtype_and_devices_expand_into_cases.py::test_dtypes[int8]",
            "test_dtype_and_devices_expand_into_cases.py::test_dtypes[int8-dynamic]",
            "test_dtype_and_devices_expand_into_cases.py::test_devices[d1]",
            "test_dtype_and_devices_expand_into_cases.py::test_devices[d2]",
            "test_dtype_and_devices_expand_into_cases.py::test_devices[d8]",
            "test_dtype_and_devices_expand_into_cases.py::test_both[fp32-d1]",
            "test_dtype_and_devices_expand_into_cases.py::test_both[fp32-d8]",
            "test_dtype_and_devices_expand_into_cases.py::test_both[bf16-d1]",
            "test_dtype_and_devices_expand_into_cases.py::test_both[bf16-d8]",
            "11 tests collected*",
        )
    )
    run(jaxperf_pytester).assert_outcomes(passed=11)


@pytest.mark.parametrize(
    ("decorator", "message"),
    [
        (
            "@jaxperf.jit_warm(warmup=2, max_compile=1)",
            "jaxperf_jit_warm: unknown keyword argument 'max_compile'=1; accepted: warmup, max_compiles",
        ),
        (
            "@pytest.mark.jaxperf_jit_warm(max_compiles=0)",
            "jaxperf_jit_warm: max_compiles must be a positive integer, got 0",
        ),
        (
            "@jaxperf.jit_warm(3)",
            "jaxperf_jit_warm: takes keyword arguments only (warmup=, max_compiles=), got 3",
        ),
        (
            '@jaxperf.dtype("bf16", "float8")',
            "jaxperf_dtype: unknown dtype 'float8'; accepted: float32, fp32, bfloat16, bf16, float16, fp16, "
            "int8, int8-dynamic",
        ),
        ('@jaxperf.dtype("bf16", "bfloat16")', "jaxperf_dtype: dtype 'bf16' is named twice"),
        ("@jaxperf.dtype()", "jaxperf_dtype: name at least one dtype, e.g. dtype('bf16', 'int8')"),
        (
            '@jaxperf.dtype("bf16", min_sqnr_db="high")',
            "jaxperf_dtype: min_sqnr_db must be a finite number of dB, got 'high'",
        ),
        ("@jaxperf.devices(1, 0)", "jaxperf_devices: device count must be a positive integer, got 0"),
        ("@jaxperf.devices(-2)", "jaxperf_devices: device count must be a positive integer, got -2"),
        ('@jaxperf.devices("8")', "jaxperf_devices: device count must be a positive integer, got '8'"),
        (
            '@jaxperf.devices(1, platform="cuda")',
            "jaxperf_devices: unknown platform 'cuda'; accepted: cpu, gpu, tpu",
        ),
        (
            '@jaxperf.memory(max_bytes="12 parsecs")',
            "jaxperf_memory: max_bytes: cannot read '12 parsecs' as a size*",
        ),
        ("@jaxperf.memory(max_bytes=0)", "jaxperf_memory: max_bytes: a size must be positive, got 0"),
        ("@jaxperf.memory(max_bytes=-5)", "jaxperf_memory: max_bytes: a size must be positive, got -5"),
        ("@jaxperf.memory()", "jaxperf_memory: max_bytes= is required*"),
        (
            "@jaxperf.gate(threshold=0)",
            "jaxperf_gate: threshold must be a fraction such as 0.1 (10%), got 0",
        ),
        ('@jaxperf.gate(mode="fast")', "jaxperf_gate: unknown mode 'fast'; accepted: latency, throughput"),
        (
            "@jaxperf.gate(budget_seconds=-1)",
            "jaxperf_gate: budget_seconds must be a positive number, got -1",
        ),
        ("@jaxperf.gate(0.2)", "jaxperf_gate: takes keyword arguments only*got 0.2"),
        # Values that would switch a check off, or crash it at run time.
        (
            "@jaxperf.gate(threshold=2)",
            "jaxperf_gate: threshold must be a fraction such as 0.1 (10%), got 2",
        ),
        (
            '@jaxperf.gate(budget_seconds=float("inf"))',
            "jaxperf_gate: budget_seconds must be a positive number, got inf",
        ),
        (
            '@jaxperf.gate(budget_seconds=float("nan"))',
            "jaxperf_gate: budget_seconds must be a positive number, got nan",
        ),
        (
            '@jaxperf.dtype("bf16", min_sqnr_db=float("nan"))',
            "jaxperf_dtype: min_sqnr_db must be a finite number of dB, got nan",
        ),
        (
            '@jaxperf.dtype("bf16", min_sqnr_db={"int8": float("-inf")})',
            "jaxperf_dtype: min_sqnr_db['int8'] must be a finite number of dB, got -inf",
        ),
        (
            '@jaxperf.dtype("bf16", input_scale=(1e-3, float("inf")))',
            "jaxperf_dtype: input_scale must be (smallest, largest) positive magnitudes*got (0.001, inf)",
        ),
    ],
)
def test_marker_misuse_is_a_collection_error_naming_test_marker_and_value(
    jaxperf_pytester: pytest.Pytester, decorator: str, message: str
) -> None:
    jaxperf_pytester.makepyfile(
        test_misuse=f"""
        import pytest
        import pytest_jaxperf as jaxperf

        def test_fine(jaxperf):
            pass

        {decorator}
        def test_misused(jaxperf):
            pass
        """
    )
    # Collection only: validation must not need jax, and stays fast enough to parametrize widely.
    result = jaxperf_pytester.runpytest_inprocess("--collect-only", "-q", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        globs("*ERROR collecting test_misuse.py*", f"test_misuse.py::test_misused: {message}")
    )
    result.stdout.no_fnmatch_line("*Traceback*")


def test_marker_on_a_test_without_the_fixture(jaxperf_pytester: pytest.Pytester) -> None:
    jaxperf_pytester.makepyfile(
        """
        import pytest_jaxperf as jaxperf

        @jaxperf.dtype("bf16")
        def test_forgot_fixture():
            pass
        """
    )
    result = jaxperf_pytester.runpytest_inprocess("--collect-only", "-q")
    result.stdout.fnmatch_lines(
        [
            "*test_forgot_fixture: jaxperf_dtype acts through the jaxperf fixture, which this test does "
            "not request*"
        ]
    )


def test_markers_are_registered(jaxperf_pytester: pytest.Pytester) -> None:
    result = jaxperf_pytester.runpytest_inprocess("--markers")
    result.stdout.fnmatch_lines(
        [
            "@pytest.mark.jaxperf_jit_warm(warmup=2, max_compiles=1): JIT-compile the model*",
            "@pytest.mark.jaxperf_dtype(*names, min_sqnr_db=None, max_examples=None, input_scale=*: "
            "one case per*",
            "@pytest.mark.jaxperf_devices(*counts, platform=None): one case per device count*",
            "@pytest.mark.jaxperf_memory(max_bytes): fail when the compiled model needs more*",
        ]
    )
