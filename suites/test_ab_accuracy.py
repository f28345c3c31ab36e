"""How precise ``jaxperf ab`` is on this machine: false alarms on unchanged code, and how often it catches a
slowdown that changes no FLOPs (XLA's fusion pass turned off by a flag in the changed side's conftest).

A project in a temporary git repository has one measured test. Three directories hold it: the base revision
checked out in a worktree (A, as ``jaxperf ab`` does), the working tree with the same code (B), and a copy
whose conftest sets ``XLA_FLAGS=--xla_disable_hlo_passes=fusion`` (S). A pool of rounds runs the three in
fresh processes, in rotating order. A trial of ``jaxperf ab --rounds 5`` is five rounds of the pool drawn at
random: A against B (an A/A trial: any ``regressed`` is a false alarm) and A against S (a detection trial).
The flag's own effect is measured over the whole pool; the detection rate is also given at exactly 10%, the
slowed processes' medians scaled so that their mean effect is 10% (their spread kept). Disjoint trials (the
pool cut into blocks of five rounds) are reported beside the resampled ones.

The pool has JAXPERF_AB_POOL_ROUNDS rounds: by default 8 (about 85 s with one real ``jaxperf ab``), the
main job's sanity check with loose bounds; the figures in docs/cli.md come from 60 rounds (about 8 minutes),
where the issue's bounds (at most 1% false alarms, at least 95% detection) are asserted.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

from pytest_jaxperf.ab import (
    REGRESSED,
    base_worktree,
    install_outcomes_plugin,
    ratio_of_medians,
    ratio_verdict,
    run_ab,
    run_side,
)
from suites.marks import cpu_runner_benchmark, gate_benchmark

pytestmark = [gate_benchmark, cpu_runner_benchmark]
POOL_ROUNDS = int(os.environ.get("JAXPERF_AB_POOL_ROUNDS", "8"))
#: Where to keep the pool's medians, for a look at other decision rules without re-running it.
POOL_JSON = os.environ.get("JAXPERF_AB_POOL_JSON")
FULL_POOL = 40
TRIAL_ROUNDS = 5
RESAMPLED_TRIALS = 20_000
#: How far below its B/A ratio an unchanged trial's interval may reach for an exact 10 % to be detectable
#: (a regression needs the interval's low end beyond +5 %).
SEEABLE_HALF_WIDTH = 0.04
PYTEST_ARGS = ["-p", "no:randomly", "--jaxperf-budget=1"]

MODEL_TEST = """
import jax
import jax.numpy as jnp
import numpy as np

D = 256


def test_mlp(jaxperf):
    rng = np.random.default_rng(0)
    w1, *rest = (jnp.asarray(rng.normal(size=(D, D)).astype(np.float32) / D**0.5) for _ in range(4))

    @jax.jit
    def mlp(x):
        h = x @ w1
        h = jnp.tanh(h) * 1.01 + 0.1 * h  # elementwise work that XLA fuses
        for w in rest:
            h = h @ w
        return h

    jaxperf.measure(mlp, jnp.ones((128, D), jnp.float32))
"""
SLOW_CONFTEST = """
import os

# The change under test: XLA's fusion pass off. Same FLOPs, more memory traffic, a slower program.
os.environ["XLA_FLAGS"] = "--xla_disable_hlo_passes=fusion"
"""


def _git(directory: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=directory, check=True, capture_output=True)


def _project(root: Path) -> Path:
    project = root / "project"
    project.mkdir()
    (project / "test_model.py").write_text(MODEL_TEST)
    (project / "conftest.py").write_text("")
    _git(project, "init", "-q")
    _git(project, "add", ".")
    _git(
        project,
        "-c",
        "user.name=jaxperf",
        "-c",
        "user.email=jaxperf@example.invalid",
        "commit",
        "-qm",
        "base",
    )
    return project


def _rate(hits: int, total: int) -> float:
    return 100.0 * hits / total if total else math.nan


def test_ab_false_alarms_and_detection(jaxperf):
    root = Path(tempfile.mkdtemp(prefix="jaxperf-ab-bench-"))
    try:
        project = _project(root)
        slowed = root / "slowed"
        shutil.copytree(project, slowed, ignore=shutil.ignore_patterns(".git"))
        (slowed / "conftest.py").write_text(SLOW_CONFTEST)
        scratch = root / "scratch"
        scratch.mkdir()
        install_outcomes_plugin(scratch)
        medians: dict[str, list[float]] = {"A": [], "B": [], "S": []}
        seconds: list[float] = []
        with base_worktree(project, "HEAD") as worktree:
            directories = {"A": worktree, "B": project, "S": slowed}
            orders = [("A", "B", "S"), ("S", "B", "A"), ("B", "S", "A"), ("A", "S", "B"), ("S", "A", "B"),
                      ("B", "A", "S")]  # fmt: skip
            for index in range(POOL_ROUNDS):
                for side in orders[index % len(orders)]:
                    run = run_side(side, index, directories[side], PYTEST_ARGS, scratch)
                    assert run.exitstatus == 0, run.output_tail
                    (median,) = run.medians.values()
                    medians[side].append(median)
                    seconds.append(run.seconds)

        if POOL_JSON:
            Path(POOL_JSON).write_text(json.dumps({"medians": medians, "seconds": seconds}))
        # The flag's effect over the whole pool, and the noise between processes.
        effect = ratio_of_medians(medians["A"], medians["S"])
        same = ratio_of_medians(medians["A"], medians["B"])
        spread = statistics.stdev(math.log(b / a) for a, b in zip(medians["A"], medians["B"], strict=True))
        scale = 1.10 / effect.ratio
        exact_ten = [m * scale for m in medians["S"]]

        rng = random.Random(0)
        false_alarms = detected = detected_ten = 0
        half_widths: list[float] = []  # how far below its ratio each unchanged trial's interval reaches
        for _ in range(RESAMPLED_TRIALS):
            rounds = rng.sample(range(POOL_ROUNDS), TRIAL_ROUNDS)

            def pick(values: list[float], rounds: list[int] = rounds) -> list[float]:
                return [values[i] for i in rounds]

            unchanged = ratio_of_medians(pick(medians["A"]), pick(medians["B"]))
            half_widths.append(unchanged.ratio - unchanged.ci_low)
            false_alarms += ratio_verdict(unchanged) == REGRESSED
            detected += ratio_verdict(ratio_of_medians(pick(medians["A"]), pick(medians["S"]))) == REGRESSED
            detected_ten += ratio_verdict(ratio_of_medians(pick(medians["A"]), pick(exact_ten))) == REGRESSED
        blocks = [
            list(range(i, i + TRIAL_ROUNDS)) for i in range(0, POOL_ROUNDS - TRIAL_ROUNDS + 1, TRIAL_ROUNDS)
        ]
        disjoint_alarms = sum(
            ratio_verdict(ratio_of_medians([medians["A"][i] for i in b], [medians["B"][i] for i in b]))
            == REGRESSED
            for b in blocks
        )
        disjoint_detected = sum(
            ratio_verdict(ratio_of_medians([medians["A"][i] for i in b], [medians["S"][i] for i in b]))
            == REGRESSED
            for b in blocks
        )

        # One real `jaxperf ab --rounds 5` on the unchanged working tree: its wall time per test.
        start = time.perf_counter()
        report = run_ab("HEAD", PYTEST_ARGS, rounds=TRIAL_ROUNDS, directory=project)
        ab_seconds = time.perf_counter() - start
    finally:
        shutil.rmtree(root, ignore_errors=True)

    jaxperf.record("pool rounds (3 fresh processes each)", POOL_ROUNDS, "rounds")
    jaxperf.record("seconds per process", statistics.fmean(seconds), "s")
    jaxperf.record("A/A spread of B/A between rounds (sd of log ratio)", 100 * spread, "%")
    jaxperf.record("A/A B/A over the pool", same.ratio, "×")
    jaxperf.record("fusion flag's slowdown over the pool", 100 * (effect.ratio - 1), "%")
    jaxperf.record("fusion flag's slowdown, 95% CI low", 100 * (effect.ci_low - 1), "%")
    jaxperf.record("fusion flag's slowdown, 95% CI high", 100 * (effect.ci_high - 1), "%")
    jaxperf.record("A/A false alarms, 5-round trials resampled", _rate(false_alarms, RESAMPLED_TRIALS), "%")
    jaxperf.record("fusion flag detected, 5-round trials resampled", _rate(detected, RESAMPLED_TRIALS), "%")
    jaxperf.record("exact 10% slowdown detected, resampled", _rate(detected_ten, RESAMPLED_TRIALS), "%")
    half_width = statistics.median(half_widths)
    jaxperf.record("5-round B/A interval below its ratio, unchanged code (median)", 100 * half_width, "%")
    jaxperf.record("disjoint 5-round trials", len(blocks), "trials")
    jaxperf.record("A/A false alarms, disjoint trials", disjoint_alarms, "trials")
    jaxperf.record("fusion flag detected, disjoint trials", disjoint_detected, "trials")
    jaxperf.record("jaxperf ab --rounds 5, one test: wall time", ab_seconds, "s")
    jaxperf.record("jaxperf ab --rounds 5 on unchanged code: verdict regressed", report.failing, "bool")

    assert [row.key for row in report.rows if row.estimate is not None] == ["mlp"], report.rows
    if POOL_ROUNDS >= FULL_POOL:
        # The bounds, on a pool large enough to estimate them.
        assert _rate(false_alarms, RESAMPLED_TRIALS) <= 1.0
        assert _rate(detected_ten, RESAMPLED_TRIALS) >= 95.0
    else:
        # A small pool's estimates are rough: loose bounds that still catch a broken gate. Detection of an
        # exact 10% depends on the machine's noise that day: 99.98% at a spread of 3.3%, 62% in a main
        # job whose pool spread 6.9% (5 rounds then put 10% at 1.6 standard errors).
        assert _rate(false_alarms, RESAMPLED_TRIALS) <= 5.0
        # Whether 10 % can be seen at all in 5 rounds is the machine's noise: a regression needs the
        # interval's low end beyond +5 %, so where unchanged trials' intervals reach 4 % or less below their
        # ratio, an exact 10 % clears it most of the time and a low rate is evidence against jaxperf ab;
        # where they reach further, a low rate is the noise's, and it says so with its figures.
        detection = _rate(detected_ten, RESAMPLED_TRIALS)
        if detection < 30.0:
            assert half_width > SEEABLE_HALF_WIDTH, (
                f"an exact 10% slowdown detected in only {detection:.1f}% of 5-round trials, although "
                f"unchanged trials' intervals reach only {100 * half_width:.1f}% below their ratio"
            )
            warnings.warn(
                f"inconclusive: an exact 10% slowdown was detected in {detection:.1f}% of 5-round trials, "
                f"but on this machine the intervals of unchanged trials reach {100 * half_width:.1f}% below "
                f"their ratio (a 10% change is seen reliably at {100 * SEEABLE_HALF_WIDTH:.0f}% or less)",
                stacklevel=1,
            )
