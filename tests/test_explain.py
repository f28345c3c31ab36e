"""A regression explained: the baseline's optimized program against the current one and the ops that
added the time, in the failure, the JSON and the Markdown; what it lacks said where a baseline stores no
program or the profiler cannot start; profiler traces written per check (``--jaxperf-profile``)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from .conftest import expect

# CHANGE=transpose lays the hidden activations out anew before the activation: a real transpose that XLA
# cannot fold into the matmul, and more bytes accessed, so the exact tier calls it a regression on any
# machine, however busy.
MLP = """
import os

import jax
import jax.numpy as jnp
from flax import nnx

import pytest_jaxperf as jaxperf

CHANGE = os.environ.get("CHANGE", "")


class MLP(nnx.Module):
    def __init__(self, rngs):
        self.up = nnx.Linear(256, 1024, rngs=rngs)
        self.down = nnx.Linear(1024, 256, rngs=rngs)

    def __call__(self, x):
        h = self.up(x)
        if CHANGE == "transpose":
            h = jnp.swapaxes(h.reshape(h.shape[0], 32, 32), 1, 2).reshape(h.shape)
        return self.down(jnp.tanh(h))


@jaxperf.jit_warm
def test_mlp(jaxperf):
    if os.environ.get("BUSY_PROFILER"):  # another tool's trace already running
        jax.profiler.start_trace(os.environ["BUSY_PROFILER"])
    try:
        jaxperf.check(MLP(nnx.Rngs(0)), jnp.ones((128, 256)))
    finally:
        if os.environ.get("BUSY_PROFILER"):
            jax.profiler.stop_trace()
"""


@pytest.fixture
def recorded(jaxperf_pytester: pytest.Pytester) -> pytest.Pytester:
    jaxperf_pytester.makepyfile(test_mlp=MLP)
    expect(jaxperf_pytester, "--jaxperf-update-baselines", "--jaxperf-repeat=1", passed=1)
    return jaxperf_pytester


def check_record(pytester: pytest.Pytester) -> dict:
    records = json.loads((pytester.path / "results.json").read_text())["records"]
    (record,) = [r for r in records if r["kind"] == "check"]
    return record


def test_a_transpose_is_named_in_the_failure_the_json_the_markdown_and_a_trace(
    recorded: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHANGE", "transpose")
    result = expect(
        recorded, "--jaxperf", "--jaxperf-json=results.json", "--jaxperf-markdown=summary.md",
        "--jaxperf-profile=traces", "--jaxperf-profile-on=regressed", failed=1,
    )  # fmt: skip
    # (fnmatch would read f32[128,32,32] as a character class)
    assert "\nE           why: the program changed: transpose f32[128,32,32]: 0 → 1\n" in result.stdout.str()
    result.stdout.fnmatch_lines(["E * time: * ms, *% of the time the ops added"])
    record = check_record(recorded)
    explanation = record["explanation"]
    top = explanation["program_changes"][0]
    assert (top["kind"], top["baseline"], top["current"]) == ("transposes", 0, 1)
    assert top["bytes"] == 2 * 128 * 1024 * 4
    # The time breakdown names the fusion that now holds the transpose, a kernel the baseline has not, with
    # its share of the added time (which share, and whether it leads, depends on the machine's load).
    (holding,) = [op for op in explanation["op_times"] if "transpose" in op["description"]]
    assert holding["baseline_seconds"] == 0 < holding["current_seconds"]
    assert 0 < holding["share"] <= 1
    assert (
        explanation["counts"]["current"]["transpose"]
        == explanation["counts"]["baseline"].get("transpose", 0) + 1
    )
    assert explanation["seconds"] > 0
    summary = (recorded.path / "summary.md").read_text()
    assert "**Why the time changed**" in summary
    assert "why: the program changed: transpose `f32[128,32,32]`: 0 → 1" in summary
    # The terminal summary says it too, under its own heading.
    result.stdout.fnmatch_lines(
        ["why the time changed:", "test_mlp.py::test_mlp MLP:", "    why: the program changed: transpose*"]
    )
    # The regressed check's trace, in a folder named by module, test and measurement (a short hash keeps
    # two that read alike apart), with Perfetto's file and XProf's.
    (folder,) = Path(recorded.path, "traces").iterdir()
    assert folder.name.startswith("test_mlp.py.test_mlp.MLP-")
    assert record["trace"] == str(folder.relative_to(recorded.path))
    (perfetto,) = folder.glob("plugins/profile/*/perfetto_trace.json.gz")
    events = json.loads(gzip.decompress(perfetto.read_bytes()))["traceEvents"]
    assert any("fusion" in str(event.get("name")) for event in events), "the program's ops in the trace"
    assert list(folder.glob("plugins/profile/*/*.xplane.pb")), "XProf's file written too"
    result.stdout.fnmatch_lines(
        [f"jaxperf: 1 profiler trace(s): traces/{folder.name}; open a trace at ui.perfetto.dev*"]
    )


def test_explain_and_profile_on_request_for_an_unchanged_program(recorded: pytest.Pytester) -> None:
    expect(
        recorded, "--jaxperf", "--jaxperf-explain", "--jaxperf-json=results.json", "--jaxperf-profile=traces",
        "--jaxperf-profile-on=regressed", passed=1,
    )  # fmt: skip
    explanation = check_record(recorded)["explanation"]
    assert explanation["headline"].startswith("the same optimized program as the baseline's")
    assert explanation["program_changes"] == []
    assert (
        explanation["no_time_breakdown"]
        == "the same program on both sides: its ops' times differ by noise only"
    )
    assert not (recorded.path / "traces").exists(), "nothing regressed: no trace"
    # Without the option, a passing check is not explained (the explanation costs time); every measured
    # check is traced by default.
    expect(recorded, "--jaxperf", "--jaxperf-json=results.json", "--jaxperf-profile=every", passed=1)
    record = check_record(recorded)
    assert record["explanation"] is None
    (folder,) = Path(recorded.path, "every").iterdir()
    assert record["trace"] == str(folder.relative_to(recorded.path))
    assert list(folder.glob("plugins/profile/*/perfetto_trace.json.gz"))


def test_a_baseline_without_a_program_is_explained_from_its_figures(
    recorded: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    (path,) = recorded.path.glob("baselines/*/test_mlp.py-*.json")
    stored = json.loads(path.read_text())
    for record in stored["records"].values():
        record.pop("program")
    path.write_text(json.dumps(stored))
    monkeypatch.setenv("CHANGE", "transpose")
    result = expect(recorded, "--jaxperf", "--jaxperf-json=results.json", failed=1)
    explanation = check_record(recorded)["explanation"]
    assert explanation["no_program"].startswith("no program stored with its baseline")
    assert explanation["no_program"].endswith("compared the figures the baseline recorded")
    assert "bytes accessed" in {change["kind"] for change in explanation["program_changes"]}
    assert explanation["no_time_breakdown"] == "no baseline program to profile beside the current one"
    result.stdout.fnmatch_lines(["E * program: no program stored with its baseline*"])


def test_a_busy_profiler_leaves_the_check_judged_and_says_why(
    recorded: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHANGE", "transpose")
    monkeypatch.setenv("BUSY_PROFILER", str(recorded.path / "their-trace"))
    result = expect(
        recorded, "--jaxperf", "--jaxperf-json=results.json", "--jaxperf-profile=traces", failed=1
    )
    record = check_record(recorded)
    assert record["verdict"]["status"] == "regressed"
    explanation = record["explanation"]
    assert explanation["program_changes"][0]["kind"] == "transposes"
    assert explanation["no_time_breakdown"].startswith("the profiler could not start: ")
    assert "op_times" not in explanation
    result.stdout.fnmatch_lines(["E * time: no per-op breakdown: the profiler could not start: *"])
    # No trace either: a warning at the test's line says why.
    assert record["trace"] is None
    result.stdout.fnmatch_lines(
        [
            "*test_mlp.py:*: JaxperfNoTrace: test_mlp.py::test_mlp MLP: no trace written: the profiler could "
            "not start: *"
        ]
    )


def test_bad_profile_options_are_usage_errors_naming_them(jaxperf_pytester: pytest.Pytester) -> None:
    jaxperf_pytester.makepyfile(test_mlp=MLP)
    result = jaxperf_pytester.runpytest_subprocess("--jaxperf", "--jaxperf-profile-on=sometimes")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--jaxperf-profile-on*invalid choice*'sometimes'*"])
    (jaxperf_pytester.path / "afile").write_text("")
    result = jaxperf_pytester.runpytest_subprocess("--jaxperf", "--jaxperf-profile=afile")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--jaxperf-profile*afile cannot be written: it is a file, not a folder*"])
    jaxperf_pytester.makeini(
        "[pytest]\naddopts = -p no:cacheprovider -p no:randomly\njaxperf_profile_on = never\n"
    )
    result = jaxperf_pytester.runpytest_subprocess("--jaxperf")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*jaxperf_profile_on: unknown choice 'never'; accepted: all, regressed*"])
