"""The regression gate end to end: new → update → pass → regressed → improved → not comparable → corrupt."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from .conftest import expect, run, unwrapped

# WORK sets how much the model computes: 1 is the baseline, 3 does three times the work (more FLOPs,
# bytes and time), and a smaller hidden width (WIDTH) makes it faster.
GATED_TESTS = """
    import os
    import jax.numpy as jnp
    from flax import nnx
    import pytest_jaxperf as jaxperf

    WORK = int(os.environ.get("WORK", "1"))
    WIDTH = int(os.environ.get("WIDTH", "512"))

    class Stack(nnx.Module):
        def __init__(self, *, rngs):
            self.layers = nnx.List([nnx.Linear(WIDTH, WIDTH, rngs=rngs) for _ in range(WORK * 4)])

        def __call__(self, x):
            for layer in self.layers:
                x = nnx.relu(layer(x))
            return x

    @jaxperf.jit_warm
    @jaxperf.dtype("fp32")
    def test_stack(jaxperf):
        jaxperf.check(Stack(rngs=nnx.Rngs(0)), jnp.ones((64, WIDTH)))
    """


def baseline_files(root: Path) -> list[Path]:
    return sorted((root / "baselines").glob("*/*.json"))


@pytest.fixture
def gated(jaxperf_pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    jaxperf_pytester.makepyfile(test_gated=GATED_TESTS)
    monkeypatch.delenv("WORK", raising=False)
    monkeypatch.delenv("WIDTH", raising=False)
    return jaxperf_pytester


def test_life_cycle(gated: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    # No baseline: the test passes and says so.
    expect(gated, "--jaxperf", passed=1, lines=["*test_gated.py::test_stack?fp32?*fp32-d1*Stack*new"])
    assert baseline_files(gated.path) == []

    # Record: one file for this environment and module, with the noise floor of 2 processes.
    expect(
        gated,
        "--jaxperf-update-baselines",
        "--jaxperf-repeat=2",
        passed=1,
        lines=["*noise floor from 2 processes*", "*1 baseline(s) written to *test_gated.py-*.json"],
    )
    (path,) = baseline_files(gated.path)
    document = json.loads(path.read_text())
    assert document["schema_version"] == 1
    assert document["module"] == "test_gated.py"
    record = document["records"]["test_stack[fp32]::Stack"]
    assert record["processes"] == 2
    assert len(record["process_medians"]) == 2
    # The baseline sits at the median of the processes' medians (here: their mean, rounded as stored).
    assert record["median"] == pytest.approx(sum(record["process_medians"]) / 2, rel=1e-5)
    assert record["compiles"] == 1
    assert record["metrics"]["flops"] > 2 * 64 * 512 * 512 * 4
    assert len(record["samples"]) == 41
    # Deterministic and reviewable: sorted keys, numbers to 6 significant digits.
    text = path.read_text()
    assert text == json.dumps(json.loads(text), sort_keys=True, indent=1, ensure_ascii=False) + "\n"

    # Unchanged code against that baseline passes. The threshold is wide on purpose: this checks the
    # plumbing (the baseline found, compared, passed), not the machine's speed, which on a shared runner
    # moves by more than two recording processes show (−20 % seen here once); the gate's power is
    # measured by suites/test_gate_accuracy.py.
    expect(gated, "--jaxperf", "--jaxperf-threshold=0.9", passed=1, lines=["*test_stack?fp32?*Stack*pass*"])

    # Three times the work: regressed, naming the deterministic metric and the timing.
    monkeypatch.setenv("WORK", "3")
    expect(
        gated,
        "--jaxperf",
        failed=1,
        lines=[
            "*PerformanceRegression: Stack (fp32-d1): FLOPs * vs baseline * (+200.*%)*throughput * items/s "
            "vs baseline * (−*%, 95% CI *, limit −*%)",
            "*test_stack?fp32?*Stack*regressed*",
        ],
    )

    # A quarter of the width: far less work, reported as improved, and the test passes.
    monkeypatch.setenv("WORK", "1")
    monkeypatch.setenv("WIDTH", "128")
    # The inputs' shape changed with the width, so the deterministic figures all drop.
    expect(gated, "--jaxperf", passed=1, lines=["*test_stack?fp32?*Stack*improved*"])


def test_extending_a_baseline_adds_another_recordings_processes(
    gated: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    def extend(*lines: str) -> None:
        expect(gated, "--jaxperf-extend-baselines", "--jaxperf-repeat=1", passed=1, lines=lines)

    expect(gated, "--jaxperf-update-baselines", "--jaxperf-repeat=2", passed=1)
    (path,) = baseline_files(gated.path)
    first = json.loads(path.read_text())["records"]["test_stack[fp32]::Stack"]
    assert first["recordings"] == 1

    # The same code measured again later: its processes join the stored ones.
    extend(
        "jaxperf: 1 baseline(s) extended with this recording's processes, 0 recorded anew",
        "*1 baseline(s) written to *test_gated.py-*.json",
    )
    extended = json.loads(path.read_text())["records"]["test_stack[fp32]::Stack"]
    assert extended["recordings"] == 2
    assert extended["processes"] == 3
    assert extended["process_medians"][:2] == first["process_medians"]
    medians = sorted(extended["process_medians"])
    assert extended["median"] == pytest.approx(medians[1], rel=1e-5)
    assert extended["noise_floor"] >= (medians[2] - medians[0]) / medians[1] - 1e-5

    # A changed model is not the same code at another time: refused, its baseline kept as it was.
    monkeypatch.setenv("WORK", "3")
    before = path.read_text()
    extend(
        "jaxperf: test_gated.py::test_stack[fp32]::Stack not extended: its program changed since it "
        "was recorded (FLOPs * vs baseline * (+200.*%)*; it keeps its baseline "
        "(--jaxperf-update-baselines records it anew)",
    )
    assert path.read_text() == before


def test_other_environment_is_not_comparable(gated: pytest.Pytester) -> None:
    expect(gated, "--jaxperf-update-baselines", "--jaxperf-repeat=1", passed=1)
    (path,) = baseline_files(gated.path)
    # The same file as if recorded on another machine: moved to its own environment folder.
    document = json.loads(path.read_text())
    document["environment"]["device_kind"] = "NVIDIA H200"
    other = gated.path / "baselines" / "gpu-nvidia-h200-x1-00000000" / path.name
    other.parent.mkdir()
    other.write_text(json.dumps(document))
    path.unlink()
    result = expect(gated, "--jaxperf", passed=1, lines=["*test_stack?fp32?*Stack*not comparable*"])
    elsewhere = "(device_kind: 'NVIDIA H200' there, 'cpu' here)"
    assert f"not comparable: only a baseline of another environment {elsewhere}" in unwrapped(result)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"schema_version": 1, "records": {', "is corrupt or truncated"),
        ('{"schema_version": 99, "environment": {}, "records": {}}', "has schema version 99"),
        ("[1, 2, 3]", "is not a jaxperf baseline"),
    ],
    ids=["truncated", "schema", "foreign"],
)
def test_a_broken_baseline_file_is_reported_and_never_overwritten(
    gated: pytest.Pytester, content: str, message: str
) -> None:
    expect(gated, "--jaxperf-update-baselines", "--jaxperf-repeat=1", passed=1)
    (path,) = baseline_files(gated.path)
    path.write_text(content)
    result = expect(gated, "--jaxperf", failed=1)
    result.stdout.fnmatch_lines([f"jaxperf: baseline file *{path.name} {message}*left as it is*"])
    # Updating does not silently replace it either: reported, the run fails, the file is as it was.
    result = gated.runpytest_subprocess("--jaxperf-update-baselines", "--jaxperf-repeat=1")
    assert result.ret != 0
    result.stdout.fnmatch_lines([f"jaxperf: baseline file *{path.name} {message}*"])
    assert path.read_text() == content


def test_xdist_run_writes_each_baseline_once(jaxperf_pytester: pytest.Pytester) -> None:
    jaxperf_pytester.makepyfile(
        test_many="""
        import jax
        import jax.numpy as jnp
        import pytest

        @pytest.mark.parametrize("n", [8, 16, 32, 64])
        def test_sum(jaxperf, n):
            jaxperf.measure(jax.jit(jnp.sum), jnp.ones((n, n)), name=f"sum{n}")
        """
    )
    expect(jaxperf_pytester, "-n", "2", "--jaxperf-update-baselines", "--jaxperf-repeat=1", passed=4)
    (path,) = baseline_files(jaxperf_pytester.path)
    records = json.loads(path.read_text())["records"]
    assert sorted(records) == [f"test_sum[{n}]::sum{n}" for n in (16, 32, 64, 8)]
    assert not list(path.parent.glob(".*"))  # no temporary file left behind


def test_ids_with_slashes_brackets_colons_and_unicode_stay_in_the_folder(
    jaxperf_pytester: pytest.Pytester,
) -> None:
    sub = jaxperf_pytester.mkpydir("ünï")
    (sub / "test_odd.py").write_text(
        "import jax, jax.numpy as jnp, pytest\n"
        "@pytest.mark.parametrize('name', ['a/../../b', 'x::y[z]', 'ÿ ☃'])\n"
        "def test_odd(jaxperf, name):\n"
        "    jaxperf.measure(jax.jit(jnp.sum), jnp.ones((4,)), name=name)\n"
    )
    expect(jaxperf_pytester, "--jaxperf-update-baselines", "--jaxperf-repeat=1", passed=3)
    files = [p for p in (jaxperf_pytester.path / "baselines").rglob("*") if p.is_file()]
    assert len(files) == 1
    assert files[0].parent.parent == jaxperf_pytester.path / "baselines"
    records = json.loads(files[0].read_text(encoding="utf-8"))["records"]
    # pytest escapes non-ASCII in ids; the measurement's own name keeps its characters.
    assert sorted(records) == [
        "test_odd[\\xff \\u2603]::ÿ ☃",
        "test_odd[a/../../b]::a/../../b",
        "test_odd[x::y[z]]::x::y[z]",
    ]
    # Read back under each odd id: each measurement finds its baseline. What is tested is the names, not
    # the timing: whatever the verdict on a busy machine (a 10 µs function may well "regress"), none is new.
    result = run(jaxperf_pytester, "--jaxperf", "--jaxperf-json=results.json")
    result.stdout.fnmatch_lines(["*odd?a/../../b?*fp32-d1*a/../../b*"])
    document = json.loads((jaxperf_pytester.path / "results.json").read_text(encoding="utf-8"))
    statuses = {r["key"]: r["verdict"]["status"] for r in document["records"] if r.get("verdict")}
    assert sorted(statuses) == ["a/../../b", "x::y[z]", "ÿ ☃"]
    assert "new" not in statuses.values()


def test_pytest_benchmark_fixture_and_exports(jaxperf_pytester: pytest.Pytester) -> None:
    jaxperf_pytester.makepyfile(
        """
        import jax
        import jax.numpy as jnp

        def test_ours(jaxperf):
            jaxperf.measure(jax.jit(jnp.cumsum), jnp.ones((256,)))

        def test_theirs(benchmark):
            benchmark(sum, range(100))

        def test_interleaved(jaxperf):
            # Compute-bound (at 64×64 dispatch dominated, and one matmul once read 0.90× of two).
            x = jnp.ones((256, 256)) / 256
            comparison = jaxperf.compare(jax.jit(lambda x: x @ x), jax.jit(lambda x: x @ x @ x @ x @ x), x)
            assert comparison.ratio > 1  # four matmuls take longer than one
        """
    )
    step_summary = jaxperf_pytester.path / "step-summary.md"
    os.environ["GITHUB_STEP_SUMMARY"] = str(step_summary)
    try:
        expect(
            jaxperf_pytester,
            "--jaxperf",
            "--jaxperf-markdown=summary.md",
            "--jaxperf-benchmark-json=bench.json",
            passed=3,
            lines=["*B / A*ratio (time)*95% CI*rounds", "*test_interleaved*<lambda> / <lambda>*"],
        )
    finally:
        del os.environ["GITHUB_STEP_SUMMARY"]
    markdown = (jaxperf_pytester.path / "summary.md").read_text()
    assert markdown.startswith("### jaxperf\n")
    assert "| test_pytest_benchmark_fixture_and_exports.py::test_ours | fp32-d1 | cumsum |" in markdown
    assert step_summary.read_text() == markdown
    # pytest-benchmark's own compare command reads our export.
    compare = jaxperf_pytester.run("pytest-benchmark", "compare", str(jaxperf_pytester.path / "bench.json"))
    assert compare.ret == 0
    compare.stdout.fnmatch_lines(["*test_ours::cumsum*"])


def test_an_interrupted_update_writes_nothing(jaxperf_pytester: pytest.Pytester) -> None:
    jaxperf_pytester.makepyfile(
        """
        import jax
        import jax.numpy as jnp

        def test_measured(jaxperf):
            jaxperf.measure(jax.jit(jnp.sum), jnp.ones((8,)))

        def test_ctrl_c():
            raise KeyboardInterrupt
        """
    )
    result = jaxperf_pytester.runpytest_subprocess("--jaxperf-update-baselines", "--jaxperf-repeat=1")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["jaxperf: the run was interrupted; no baseline was written"])
    assert not (jaxperf_pytester.path / "baselines").exists()


def test_throughput_mode_and_roofline(jaxperf_pytester: pytest.Pytester) -> None:
    jaxperf_pytester.makepyfile(
        """
        import jax
        import jax.numpy as jnp
        import pytest_jaxperf as jaxperf

        @jaxperf.gate(mode="throughput", budget_seconds=0.2)
        def test_pipelined(jaxperf):
            record = jaxperf.measure(jax.jit(lambda x: x @ x), jnp.ones((128, 128)))
            timing = record.timing
            assert timing["mode"] == "throughput"
            assert timing["calls_per_sample"] > 1  # a round of back-to-back calls, one block
            assert record.roofline["flops_per_second"] == record.metrics["flops"] / timing["median"]
            assert record.roofline["fraction_of_peak_flops"] > 0  # measured ceilings on the spot
            assert "measured on the spot" in record.roofline["peak_source"]
        """
    )
    expect(jaxperf_pytester, "--jaxperf", "--jaxperf-measure-peaks", passed=1)


def test_options_with_bad_values_name_them(jaxperf_pytester: pytest.Pytester) -> None:
    for args, message in (
        (["--jaxperf-budget=0"], "*--jaxperf-budget: expected a positive number, got '0'*"),
        (["--jaxperf-repeat=two"], "*--jaxperf-repeat: expected a positive integer, got 'two'*"),
        (["--jaxperf-mode=fast"], "*--jaxperf-mode: invalid choice: 'fast'*"),
        (["--jaxperf-budget=inf"], "*--jaxperf-budget: expected a positive number, got 'inf'*"),
        (["--jaxperf-budget=nan"], "*--jaxperf-budget: expected a positive number, got 'nan'*"),
        (["--jaxperf-threshold=inf"], "*--jaxperf-threshold: expected a fraction such as 0.1*got 'inf'*"),
        (["--jaxperf-threshold=2"], "*--jaxperf-threshold: expected a fraction such as 0.1*got '2'*"),
        (
            ["--jaxperf-replay-threshold=0"],
            "*--jaxperf-replay-threshold: expected a fraction such as 0.1 (10%), got '0'*",
        ),
    ):
        result = jaxperf_pytester.runpytest_inprocess(*args)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines([message])
    jaxperf_pytester.makeini("[pytest]\njaxperf_threshold = lots\n")
    result = jaxperf_pytester.runpytest_inprocess()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*jaxperf: jaxperf_threshold: expected a fraction such as 0.1*got 'lots'*"])


@pytest.mark.parametrize("method", ["check", "measure"])
def test_an_inconclusive_warning_points_at_the_tests_own_line(
    method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The verdict forced to inconclusive: where the warning is attributed is what this checks.
    import dataclasses
    import warnings

    import jax
    import jax.numpy as jnp

    from pytest_jaxperf import gating
    from pytest_jaxperf.fixture import Jaxperf
    from pytest_jaxperf.gating import JaxperfInconclusive
    from pytest_jaxperf.settings import PluginSettings
    from pytest_jaxperf.specs import TestSpec
    from pytest_jaxperf.verdicts import INCONCLUSIVE, Verdict

    monkeypatch.setattr(gating, "baseline_verdict", lambda *args: Verdict(INCONCLUSIVE, "too noisy"))
    settings = dataclasses.replace(PluginSettings(), measure=True, budget_seconds=0.02)
    handle = Jaxperf("test_x.py::test_x", TestSpec(), settings=settings, baselines=lambda: None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        getattr(handle, method)(jax.jit(lambda x: x + 1), jnp.ones((4,)))
        line = sys._getframe().f_lineno - 1
    [warning] = [w for w in caught if issubclass(w.category, JaxperfInconclusive)]
    assert (warning.filename, warning.lineno) == (__file__, line)
