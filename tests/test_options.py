"""Command-line options, ini twins, the report header, the summary, the JSON file, xdist, lazy import."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from .conftest import expect, globs, run

STABLE_TESTS = """
    import jax.numpy as jnp
    from flax import nnx
    import pytest_jaxperf as jaxperf
    from models import Decoder

    @jaxperf.jit_warm(warmup=3)
    def test_decoder(jaxperf):
        jaxperf.check(Decoder(rngs=nnx.Rngs(0)), jnp.zeros((16, 32)))

    def test_figure(jaxperf):
        jaxperf.record("answer", 42, "units")
    """


def test_help_lists_the_options(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_inprocess("--help")
    result.stdout.fnmatch_lines(
        globs(
            "JAX/Flax performance checks (pytest-jaxperf):",
            "  --jaxperf *Measure every jaxperf check and compare with the*",
            "  --jaxperf-baselines=DIR",
            "*Directory of committed baselines*",
            "  --jaxperf-update-baselines",
            "*Record new baselines from this run*",
            "  --jaxperf-json=PATH*Write every jaxperf record*",
        )
    )
    result.stdout.fnmatch_lines(
        ["*jaxperf (bool)*", "*jaxperf_baselines (string)*", "*jaxperf_json (string)*"]
    )


def test_without_jaxperf_no_header_and_no_summary(jaxperf_pytester: pytest.Pytester) -> None:
    jaxperf_pytester.makepyfile(STABLE_TESTS)
    result = expect(jaxperf_pytester, passed=2)
    result.stdout.no_fnmatch_line("jaxperf: backend*")
    result.stdout.no_fnmatch_line("*= jaxperf =*")


def test_jaxperf_prints_header_and_summary_and_writes_json(jaxperf_pytester: pytest.Pytester) -> None:
    jaxperf_pytester.makepyfile(STABLE_TESTS)
    result = expect(jaxperf_pytester, "--jaxperf", "--jaxperf-json=out/results.json", passed=2)
    result.stdout.fnmatch_lines(
        [
            "jaxperf: backend cpu, 1 device(s) (1× cpu); jax 0.*, jaxlib 0.*, flax 0.*",
            "*= jaxperf =*",
            "test *variant*model*compiles*median ms*vs base (+ slower)*replay*verdict (by)",
            "test_jaxperf_prints*::test_decoder*fp32-d1*Decoder*1*new",
            "test *variant*figure*value*unit",
            "*::test_figure*fp32-d1*answer*42*units",
            "jaxperf: results written to *results.json",
        ]
    )
    document = json.loads((jaxperf_pytester.path / "out" / "results.json").read_text())
    assert document["schema_version"] == 1
    assert document["environment"].startswith("jaxperf: backend cpu")
    check, figure = document["records"]
    assert check["kind"] == "check"
    assert check["model"] == "Decoder"
    assert check["compiles"] == 1
    assert len(check["steady_call_seconds"]) == 2
    assert check["inputs"] == "[0]: f32[16,32] on cpu:0"
    assert check["compile_seconds"] > 0
    assert check["first_call_seconds"] >= check["compile_seconds"]
    # Measured under --jaxperf: all samples, the deterministic metrics, and a verdict (no baseline yet).
    assert check["timing"]["mode"] == "latency"
    assert check["timing"]["items_per_call"] == 16
    assert len(check["timing"]["samples"]) >= 10
    assert check["timing"]["ci_low"] <= check["timing"]["median"] <= check["timing"]["ci_high"]
    matmul_flops = 2 * 16 * (32 * 128 + 128 * 256 + 256 * 784)
    assert matmul_flops < check["metrics"]["flops"] < 1.02 * matmul_flops  # + bias, relu, sigmoid
    assert check["metrics"]["transcendentals"] == 16 * 784  # the sigmoid
    assert check["verdict"]["status"] == "new"
    assert figure == {
        "kind": "figure",
        "name": "answer",
        "nodeid": "test_jaxperf_prints_header_and_summary_and_writes_json.py::test_figure",
        "unit": "units",
        "value": 42.0,
        "variant": "fp32-d1",
        "model": "",
        "batch": None,
    }


def test_very_quiet_prints_one_line_of_verdicts(jaxperf_pytester: pytest.Pytester) -> None:
    jaxperf_pytester.makepyfile(STABLE_TESTS)
    result = run(jaxperf_pytester, "--jaxperf", "-qq")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["jaxperf: 0 regressed, 1 new"])
    result.stdout.no_fnmatch_line("*median ms*")


def test_ini_twins(jaxperf_pytester: pytest.Pytester) -> None:
    jaxperf_pytester.makeini(
        "[pytest]\naddopts = -p no:cacheprovider\njaxperf = true\njaxperf_json = from-ini.json\n"
    )
    jaxperf_pytester.makepyfile(STABLE_TESTS)
    result = expect(jaxperf_pytester, passed=2)
    result.stdout.fnmatch_lines(["jaxperf: backend cpu*", "*= jaxperf =*"])
    assert (jaxperf_pytester.path / "from-ini.json").exists()


def test_records_from_xdist_workers_reach_the_controller(jaxperf_pytester: pytest.Pytester) -> None:
    jaxperf_pytester.makepyfile(STABLE_TESTS)
    expect(jaxperf_pytester, "-n", "2", "--jaxperf", "--jaxperf-json=results.json", passed=2)
    records = json.loads((jaxperf_pytester.path / "results.json").read_text())["records"]
    assert sorted(r["kind"] for r in records) == ["check", "figure"]


def test_baselines_option_must_name_a_directory(jaxperf_pytester: pytest.Pytester) -> None:
    jaxperf_pytester.makefile(".json", not_a_dir="{}")
    result = jaxperf_pytester.runpytest_inprocess("--jaxperf-baselines=not_a_dir.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*'not_a_dir.json' is a file, not a directory of baselines*"])


def test_baselines_ini_must_name_a_directory(jaxperf_pytester: pytest.Pytester) -> None:
    jaxperf_pytester.makefile(".json", not_a_dir="{}")
    jaxperf_pytester.makeini("[pytest]\njaxperf_baselines = not_a_dir.json\n")
    result = jaxperf_pytester.runpytest_inprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*jaxperf: 'not_a_dir.json' is a file, not a directory of baselines*"])


def test_importing_the_plugin_imports_neither_jax_nor_flax() -> None:
    code = textwrap.dedent(
        """
        import sys
        import pytest_jaxperf, pytest_jaxperf.plugin
        heavy = [m for m in ("jax", "jaxlib", "flax") if m in sys.modules]
        assert not heavy, heavy
        pytest_jaxperf.watch_compiles  # the lazy attribute loads jax on first use
        assert "jax" in sys.modules
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_conftest_configures_jax_after_the_plugin_loaded(jaxperf_pytester: pytest.Pytester) -> None:
    # jax_num_cpu_devices must be set before jax initialises a backend: the plugin must not have.
    jaxperf_pytester.makeconftest(
        """
        import jax
        jax.config.update("jax_num_cpu_devices", 3)
        """
    )
    jaxperf_pytester.makepyfile(
        """
        import jax

        def test_devices(jaxperf):
            assert len(jax.devices()) == 3
        """
    )
    result = expect(jaxperf_pytester, "--jaxperf", passed=1)
    result.stdout.fnmatch_lines(["jaxperf: backend cpu, 3 device(s) (3× cpu)*"])
