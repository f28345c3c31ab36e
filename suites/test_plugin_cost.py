"""What pytest-jaxperf itself costs: plugin overhead, the compile watch per call, import time.

Each figure is reported (``jaxperf.record``) and held to the target the foundation issue sets.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from importlib import metadata
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp

from pytest_jaxperf.ab import ratio_of_medians
from pytest_jaxperf.core.compiles import WatchedFunction, watch_compiles

if TYPE_CHECKING:
    from pathlib import Path

PLAIN_TESTS = 200
# 10 paired runs in the main job (its time); docs/measuring.md's figures are from JAXPERF_OVERHEAD_ROUNDS=15.
OVERHEAD_ROUNDS = int(os.environ.get("JAXPERF_OVERHEAD_ROUNDS", "10"))
OVERHEAD_TARGET_PERCENT = 2.0
WATCH_TARGET_US = 5.0
IMPORT_TARGET_MS = 50.0


def _environment() -> dict[str, str]:
    # The inner runs must not inherit this run's options.
    return {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS")}


def _plugin_on_and_off() -> tuple[list[str], list[str]]:
    """The options of a child pytest with the plugin and without it: installed, the entry point loads it
    and ``-p no:jaxperf`` blocks it; run from the source tree (the GPU machine) or with plugin autoloading
    off, ``-p`` loads it."""
    installed = any(entry.name == "jaxperf" for entry in metadata.entry_points(group="pytest11"))
    if installed and not os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        return [], ["-p", "no:jaxperf"]
    return ["-p", "pytest_jaxperf.plugin"], []


def _wall_time(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=_environment(), check=True, capture_output=True)
    return time.perf_counter() - start


def test_plugin_overhead_on_a_suite_without_jaxperf_markers(jaxperf, tmp_path):
    body = "\n".join(f"def test_plain_{i}():\n    assert {i} == {i}\n" for i in range(PLAIN_TESTS))
    (tmp_path / "test_plain.py").write_text(body)
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider -q\n")
    pytest_command = [sys.executable, "-m", "pytest"]
    plugin_on, plugin_off = _plugin_on_and_off()
    # The two sides really differ: the plugin's options exist with it only.
    for options, loaded in ((plugin_on, True), (plugin_off, False)):
        done = subprocess.run(
            [*pytest_command, *options, "--help"],
            cwd=tmp_path,
            env=_environment(),
            capture_output=True,
            text=True,
        )
        assert ("--jaxperf-update-baselines" in done.stdout) == loaded, (options, done.stdout[-2000:])
    _wall_time(pytest_command, tmp_path)  # write the .pyc files before timing
    with_plugin, without_plugin = [], []
    for round_index in range(OVERHEAD_ROUNDS):
        # Alternate which goes first, so a drift in machine load hits both sides alike.
        pair = [(with_plugin, plugin_on), (without_plugin, plugin_off)]
        for samples, extra in pair if round_index % 2 else reversed(pair):
            samples.append(_wall_time(pytest_command + extra, tmp_path))
    ratios = [a / b for a, b in zip(with_plugin, without_plugin, strict=True)]
    overhead = (statistics.median(ratios) - 1) * 100
    # A fresh process's wall time moves by 3–6 % from one run to the next on this machine, so the median
    # of 10–15 ratios is itself uncertain by about ±2 %: the target is held against the interval (the same
    # statistics as `jaxperf ab`), failing only when the overhead is surely above it.
    estimate = ratio_of_medians(without_plugin, with_plugin)
    jaxperf.record(f"pytest run, {PLAIN_TESTS} plain tests, plugin on", statistics.median(with_plugin), "s")
    jaxperf.record(
        f"pytest run, {PLAIN_TESTS} plain tests, -p no:jaxperf", statistics.median(without_plugin), "s"
    )
    jaxperf.record("plugin overhead (median of paired runs)", overhead, "%")
    jaxperf.record("plugin overhead, 90% interval low", (estimate.ci_low - 1) * 100, "%")
    jaxperf.record("plugin overhead, 90% interval high", (estimate.ci_high - 1) * 100, "%")
    assert (estimate.ci_low - 1) * 100 <= OVERHEAD_TARGET_PERCENT, (
        f"plugin overhead {overhead:.2f}%, surely above {OVERHEAD_TARGET_PERCENT}% "
        f"(90% interval {(estimate.ci_low - 1) * 100:.2f}%…{(estimate.ci_high - 1) * 100:.2f}%)"
    )


def _seconds_per_call(fn, x, calls=20_000):
    start = time.perf_counter()
    for _ in range(calls):
        fn(x)
    return (time.perf_counter() - start) / calls


def test_compile_watch_cost_per_call_of_a_warm_function(jaxperf):
    add_one = jax.jit(lambda x: x + 1)
    x = jnp.ones(8)
    # As the fixture and watch_compiles run it by default, and with explain=True (JAX's explanation
    # switched on around each call), which is opt-in and reported, not held to the target.
    watched = watch_compiles(add_one)
    explaining = WatchedFunction(add_one, explain=True)
    contenders = {"jitted": add_one, "watched": watched, "watched, explain=True": explaining}
    best = dict.fromkeys(contenders, float("inf"))
    for _ in range(7):  # interleaved repeats; the minimum is the least disturbed estimate
        for name, fn in contenders.items():
            fn(x)
            best[name] = min(best[name], _seconds_per_call(fn, x))
    cost = (best["watched"] - best["jitted"]) * 1e6
    explain_cost = (best["watched, explain=True"] - best["jitted"]) * 1e6
    jaxperf.record("warm jitted call, unwatched", best["jitted"] * 1e6, "µs")
    jaxperf.record("compile watch cost per warm call", cost, "µs")
    jaxperf.record("compile watch cost per warm call, explain=True", explain_cost, "µs")
    assert watched.compiles == []  # warm: nothing compiled, so nothing recorded
    assert explaining.compiles == []
    assert cost <= WATCH_TARGET_US


def test_import_time(jaxperf, tmp_path):
    def median_ms(code: str) -> float:
        return statistics.median(_wall_time([sys.executable, "-c", code], tmp_path) for _ in range(15)) * 1e3

    baseline = median_ms("pass")
    package = median_ms("import pytest_jaxperf") - baseline
    plugin = median_ms("import pytest_jaxperf.plugin") - median_ms("import pytest")
    jaxperf.record("python -c 'import pytest_jaxperf', beyond python's start-up", package, "ms")
    # The wall-clock difference is within start-up noise (±1 ms); Python's own import timer is exact.
    importtime = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import pytest_jaxperf"],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    cumulative_us = next(
        int(line.split("|")[1])
        for line in importtime.splitlines()
        if line.rstrip().endswith("| pytest_jaxperf")
    )
    jaxperf.record("import pytest_jaxperf, -X importtime cumulative", cumulative_us / 1e3, "ms")
    jaxperf.record("import pytest_jaxperf.plugin, beyond import pytest", plugin, "ms")
    leaked = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, pytest_jaxperf.plugin; print(sorted({'jax', 'flax'} & set(sys.modules)))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert leaked == "[]"
    assert package <= IMPORT_TARGET_MS
    assert cumulative_us / 1e3 <= IMPORT_TARGET_MS
