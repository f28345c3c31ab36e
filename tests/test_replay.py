"""Replay: a baseline's stored program timed beside the current program in the same process decides the
timing tier; baselines of another CPU model are judged by it; damaged or unreadable programs, and baselines
too noisy to see anything, are said so."""

from __future__ import annotations

import base64
import json
import zlib
from pathlib import Path

import pytest

from .conftest import expect, run, unwrapped

# The model repeats its layer REPEATS times in a loop (2 when recorded): the lowered cost analysis counts a
# loop's body once, so changing REPEATS changes the time and leaves FLOPs, bytes and memory as they are
# (the exact tier sees nothing).
LOOPED = """
import os

import jax
import jax.numpy as jnp
from flax import nnx

import pytest_jaxperf as jaxperf

REPEATS = int(os.environ.get("REPEATS", "2"))


class Looped(nnx.Module):
    def __init__(self, *, rngs):
        self.w = nnx.Param(jax.random.normal(rngs.params(), (256, 256)) / 16)

    def __call__(self, x):
        return jax.lax.fori_loop(0, REPEATS, lambda i, h: jnp.tanh(h @ self.w), x)


@jaxperf.jit_warm
def test_looped(jaxperf):
    jaxperf.check(Looped(rngs=nnx.Rngs(0)), jnp.ones((64, 256)))


def test_other():
    pass
"""

RECORD = ("--jaxperf-update-baselines", "--jaxperf-repeat=1")


def results(pytester: pytest.Pytester, *args: str, **outcomes: int) -> tuple[dict, pytest.RunResult]:
    """Run measured with a results file; the looped check's record and the run."""
    result = expect(pytester, "--jaxperf", "--jaxperf-json=results.json", *args, **outcomes)
    records = json.loads((pytester.path / "results.json").read_text())["records"]
    (record,) = [r for r in records if r["kind"] == "check"]
    return record, result


def baseline_file(pytester: pytest.Pytester) -> Path:
    (path,) = pytester.path.glob("baselines/*/test_looped.py-*.json")
    return path


@pytest.fixture
def recorded(jaxperf_pytester: pytest.Pytester) -> pytest.Pytester:
    jaxperf_pytester.makepyfile(test_looped=LOOPED)
    expect(jaxperf_pytester, *RECORD, passed=2)
    return jaxperf_pytester


def test_an_unchanged_program_is_judged_by_replaying_its_baseline(recorded: pytest.Pytester) -> None:
    record, result = results(recorded, passed=2)
    replay, verdict = record["replay"], record["verdict"]
    assert verdict["decided_by"] == "replay"
    assert verdict["status"] == "pass"
    assert replay["same_program"] is True
    assert replay["arguments"] == "current"
    assert replay["ci_low"] <= replay["ratio"] <= replay["ci_high"]
    assert replay["pairs"] >= 6
    assert replay["compile_seconds_current"] > 0
    assert replay["compile_seconds_baseline"] > 0
    assert verdict["cross_process"] in ("pass", "regressed", "improved", "inconclusive")
    assert verdict["detectable"] == verdict["threshold"] == 0.05
    result.stdout.fnmatch_lines(
        [
            "*test*variant*vs base (+ slower)*replay*verdict (by)",
            "*test_looped.py::test_looped*%±*pass (replay)",
        ]
    )
    assert (
        "jaxperf: replay noise: 1 check(s) replayed their own unchanged program against its baseline: "
        in (unwrapped(result))
    )


def test_a_timing_only_slowdown_is_caught_by_the_replay(
    recorded: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPEATS", "16")
    record, result = results(recorded, failed=1, passed=1)
    replay, verdict = record["replay"], record["verdict"]
    # The exact figures did not move: only the replay can see this.
    assert verdict["deterministic"] == []
    assert not verdict["regressed_exactly"]
    assert verdict["status"] == "regressed"
    assert verdict["decided_by"] == "replay"
    assert replay["same_program"] is False
    assert replay["ratio"] > 2
    assert replay["ci_low"] > 1
    result.stdout.fnmatch_lines(
        ["*PerformanceRegression: Looped (fp32-d1): replay +*% against the baseline's own program in this "
         "process (95% CI *, threshold +5.0%); cross-process: *"]
    )  # fmt: skip


def test_a_baseline_without_a_program_is_judged_as_before(recorded: pytest.Pytester) -> None:
    path = baseline_file(recorded)
    document = json.loads(path.read_text())
    del document["records"]["test_looped::Looped"]["program"]
    path.write_text(json.dumps(document))
    # A wide threshold: the plumbing is checked here, not the machine's speed across processes.
    record, result = results(recorded, "--jaxperf-threshold=0.9", passed=2)
    assert record["verdict"]["decided_by"] == "cross-process"
    assert record["replay"]["unavailable"].startswith("no program stored with its baseline")
    result.stdout.fnmatch_lines(["*jaxperf: 1 check(s) not replayed: no program stored with its baseline*"])


def test_a_damaged_program_fails_its_check_naming_the_file_and_is_left_as_it_is(
    recorded: pytest.Pytester,
) -> None:
    path = baseline_file(recorded)
    document = json.loads(path.read_text())
    program = document["records"]["test_looped::Looped"]["program"]
    program["data"] = program["data"][: len(program["data"]) // 2]
    damaged = json.dumps(document)
    path.write_text(damaged)
    result = run(recorded, "--jaxperf")
    result.assert_outcomes(failed=1, passed=1)  # the rest of the session goes on
    result.stdout.fnmatch_lines(
        [f"*the program stored in {path} record 'test_looped::Looped' cannot be read: the stored program is "
         "*; the file was left as it is*"]
    )  # fmt: skip
    assert path.read_text() == damaged


def test_a_program_this_jax_cannot_read_is_not_comparable_by_replay(recorded: pytest.Pytester) -> None:
    # Intact bytes (zlib's checksum holds) that jax's deserializer refuses: what a stored program of an
    # unreadable serialization version looks like to this jax.
    path = baseline_file(recorded)
    document = json.loads(path.read_text())
    unreadable = b"\x00" * 64
    document["records"]["test_looped::Looped"]["program"].update(
        data=base64.b64encode(zlib.compress(unreadable)).decode(), serialized_bytes=len(unreadable)
    )
    path.write_text(json.dumps(document))
    record, _ = results(recorded, "--jaxperf-threshold=0.9", passed=2)
    assert record["verdict"]["decided_by"] == "cross-process"
    assert record["replay"]["unavailable"].startswith("not comparable by replay: jax ")


def test_a_baseline_of_another_cpu_model_is_judged_by_replay_and_exact_figures(
    recorded: pytest.Pytester,
) -> None:
    path = baseline_file(recorded)
    document = json.loads(path.read_text())
    document["environment"]["cpu_model"] = "Another CPU"
    elsewhere = path.parent.parent / "cpu-cpu-x1-elsewhere" / path.name
    elsewhere.parent.mkdir()
    elsewhere.write_text(json.dumps(document))
    path.unlink()
    record, result = results(recorded, passed=2)
    verdict = record["verdict"]
    assert verdict["decided_by"] == "replay"
    assert verdict["cross_process"] == "not compared"
    assert verdict["ratio"] is None  # absolute times from another CPU are never compared
    assert "cpu_model: 'Another CPU' there" in verdict["recorded_elsewhere"]
    text = unwrapped(result)
    assert "jaxperf: 1 check(s) have baselines recorded with cpu_model: 'Another CPU' there, " in text
    assert "here: judged by replay (1 replayed) and exact figures; absolute times not compared" in text
    # The exact tier still compares: another FLOP count is caught on another CPU too.
    recorded.makepyfile(test_looped=LOOPED.replace("jnp.tanh(h @ self.w)", "jnp.tanh(h @ self.w @ self.w)"))
    record, _ = results(recorded, failed=1, passed=1)
    assert record["verdict"]["decided_by"] == "exact"
    assert record["verdict"]["regressed_exactly"]


# Each process of a recording sleeps longer than the one before it (a counter in a file): the medians of
# the recording's processes spread far beyond any threshold, and the host callback cannot be exported.
NOISY = """
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

import pytest_jaxperf as jaxperf

counter = pathlib.Path(__file__).with_name("process_count")
PROCESS = int(counter.read_text()) if counter.exists() else 0
counter.write_text(str(PROCESS + 1))


def sleepy(x):
    def sleep(value):
        time.sleep(0.001 * (1 + 3 * PROCESS))
        return np.asarray(value)

    return jax.pure_callback(sleep, jax.ShapeDtypeStruct(x.shape, x.dtype), x)


@jaxperf.jit_warm
def test_sleepy(jaxperf):
    jaxperf.check(sleepy, jnp.ones((4,)))
"""


def test_a_baseline_too_noisy_to_see_anything_is_refused_unless_allowed(
    jaxperf_pytester: pytest.Pytester,
) -> None:
    jaxperf_pytester.makepyfile(test_noisy=NOISY)
    result = run(jaxperf_pytester, "--jaxperf-update-baselines", "--jaxperf-repeat=3")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["*jaxperf: test_noisy.py::test_sleepy::sleepy can only catch slowdowns beyond +*% by its recorded "
         "times: its 3 recording processes spread *% (recorded on a busy machine?); not recorded: beyond the "
         "ceiling of +50% (jaxperf_limit_ceiling) with no program to replay (jax.export refused it: *)*"]
    )  # fmt: skip
    assert not list(jaxperf_pytester.path.glob("baselines/*/test_noisy.py-*.json"))
    (jaxperf_pytester.path / "process_count").unlink()
    result = run(
        jaxperf_pytester, "--jaxperf-update-baselines", "--jaxperf-repeat=3", "--jaxperf-allow-wide-limits"
    )
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*sleepy can only catch slowdowns beyond +*%*(recorded on a busy machine?)"])
    (path,) = jaxperf_pytester.path.glob("baselines/*/test_noisy.py-*.json")
    assert "test_sleepy::sleepy" in json.loads(path.read_text())["records"]
