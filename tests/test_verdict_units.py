"""Pure logic of the gate, the statistics and the baseline files (no pytester, no jax compile)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_jaxperf.baseline import (
    BaselineStore,
    dumps,
    environment_id,
    module_file_name,
    read_file,
    stable_numbers,
)
from pytest_jaxperf.core.metrics import hlo_counts, known_peak, normalized_hlo
from pytest_jaxperf.errors import BaselineError
from pytest_jaxperf.intervals import median_ci, ratio_ci
from pytest_jaxperf.noise import TimedCheck, expected_range, noise_floor, run_drift
from pytest_jaxperf.recording import MAX_PROCESS_MEDIANS, ProgramChanged, extended_medians
from pytest_jaxperf.verdicts import (
    IMPROVED,
    INCONCLUSIVE,
    PASS,
    REGRESSED,
    Comparability,
    ReplayFigures,
    deterministic_changes,
    replay_status,
    timing_verdict,
    verdict,
)

FINGERPRINT = {"backend": "cpu", "device_kind": "cpu", "device_count": "1", "jax": "0.10.2"}


def test_timing_verdicts_against_the_limit() -> None:
    base = {"median": 1.0, "items_per_call": 1, "noise_floor": 0.01}
    assert timing_verdict({"median": 1.3}, base, (1.25, 1.35)).status == REGRESSED
    assert timing_verdict({"median": 1.02}, base, (0.99, 1.05)).status == PASS
    assert timing_verdict({"median": 0.7}, base, (0.65, 0.75)).status == IMPROVED
    assert timing_verdict({"median": 1.1}, base, (1.05, 1.15)).status == INCONCLUSIVE
    # A noisy baseline raises the limit: 3 × 8% noise floor = 24% > the 10% threshold.
    noisy = {**base, "noise_floor": 0.08}
    assert timing_verdict({"median": 1.2}, noisy, (1.15, 1.22)).status == PASS
    verdict_ = timing_verdict({"median": 1.5}, noisy, (1.45, 1.55))
    assert verdict_.status == REGRESSED
    assert verdict_.limit == pytest.approx(0.24)
    assert (
        verdict_.reason == "median 1500 ms vs baseline 1000 ms (+50.0%, 95% CI +45.0%…+55.0%, limit +24.0%)"
    )


def test_run_drift_speaks_when_most_checks_moved_alike() -> None:
    # Nine checks 17% slower (the machine), one twice as slow: only that one stands out against the median.
    drifted = [TimedCheck(f"t{i}", 1.17 + 0.01 * (i % 3), 1.16, 0.14) for i in range(9)]
    slow = TimedCheck("slow", 2.0, 1.9, 0.14)
    drift = run_drift([*drifted, slow])
    assert drift is not None
    assert drift.checks == 10
    assert drift.median_ratio == pytest.approx(1.18)
    assert drift.slower == 10  # all ten clear their limit against their own baseline
    assert drift.standing_out == ("slow",)
    assert drift.describe().startswith("the median of 10 timed checks ran 18.0% slower than its baseline")
    # Too few checks to tell the machine from the models: said when every one moved the same way, with why
    # it cannot tell; nothing when they did not, or when there is one; nor without a common move.
    few = run_drift(drifted[:3])
    assert few is not None
    assert few.describe().startswith("all 3 timed checks ran slower than their baselines (median +18.0% in")
    assert "too few to tell" in few.describe()
    assert run_drift([*drifted[:3], TimedCheck("same", 1.0, 0.98, 0.14)]) is None
    assert run_drift(drifted[:1]) is None
    assert run_drift([TimedCheck(f"t{i}", 1.0 + 0.004 * i, 0.97, 0.1) for i in range(12)]) is None
    faster = run_drift([TimedCheck(f"t{i}", 0.8, 0.78, 0.1) for i in range(8)])
    assert faster is not None
    assert "ran 20.0% faster" in faster.describe()
    assert faster.standing_out == ()


def test_throughput_message_reads_as_a_drop() -> None:
    base = {"median": 1e-3, "items_per_call": 1000, "noise_floor": 0.0}
    result = timing_verdict({"median": 1.25e-3, "items_per_call": 1000}, base, (1.2, 1.3))
    assert result.status == REGRESSED
    assert result.reason == (
        "throughput 8e+05 items/s vs baseline 1e+06 (−20.0%, 95% CI −23.1%…−16.7%, limit −9.1%)"
    )


def test_deterministic_tier_is_exact_and_wins() -> None:
    base = {"compiles": 1, "metrics": {"flops": 1000.0, "bytes_accessed": 500.0, "memory_bytes": 4096}}
    same = {"compiles": 1, "metrics": {"flops": 1005.0, "bytes_accessed": 500.0, "memory_bytes": 4096}}
    assert deterministic_changes(same, base) == ([], [], [])  # within the 1% tolerance
    worse = {"compiles": 2, "metrics": {"flops": 2000.0, "bytes_accessed": 400.0, "memory_bytes": 8192}}
    regressions, improvements, _ = deterministic_changes(worse, base)
    assert regressions == [
        "compiles 2 vs baseline 1",
        "FLOPs 2000 vs baseline 1000 (+100.0%)",
        "memory (arguments + outputs + temporaries) 8192 vs baseline 4096 (+100.0%)",
    ]
    assert improvements == ["bytes accessed 400 vs baseline 500 (−20.0%)"]
    # Even when the time looks fine, more FLOPs fail.
    samples = list(np.linspace(0.99, 1.01, 50))
    result = verdict(
        {**worse, "median": 1.0, "items_per_call": 1},
        {**base, "median": 1.0, "noise_floor": 0.0},
        samples,
        samples,
    )
    assert result.status == REGRESSED
    assert result.reason.startswith("compiles 2 vs baseline 1; FLOPs 2000 vs baseline 1000 (+100.0%)")
    assert result.regressed_exactly
    slower = [1.5 * s for s in samples]
    timing_only = verdict({**same, "median": 1.5}, {**base, "median": 1.0}, slower, samples)
    assert (timing_only.status, timing_only.regressed_exactly) == (REGRESSED, False)


def test_noise_floor_is_the_relative_range_of_medians() -> None:
    assert noise_floor([1.0]) == 0.0
    assert noise_floor([0.9, 1.0, 1.2]) == pytest.approx(0.3)
    assert noise_floor([2.0, 2.0]) == 0.0
    # The expected range of n normal draws (the d2 table of quality control).
    assert [round(expected_range(n), 3) for n in (2, 3, 6, 12)] == [1.128, 1.693, 2.534, 3.258]
    # Six medians, two recordings alike: the range is read as three processes would show it, so a
    # baseline does not look noisier just for holding more processes.
    assert noise_floor([0.9, 1.0, 1.2] * 2) == pytest.approx(0.3 * 1.693 / 2.534, rel=1e-3)


def test_a_baseline_takes_another_recording_of_the_same_program_only() -> None:
    stored = {"median": 1.0, "process_medians": [0.9, 1.0, 1.1], "compiles": 1, "metrics": {"flops": 1e6}}
    same = {"compiles": 1, "metrics": {"flops": 1e6}}
    assert extended_medians(stored, same, [1.2, 1.3]) == [0.9, 1.0, 1.1, 1.2, 1.3]
    # Only the most recent are kept.
    many = extended_medians(stored, same, [2.0] * MAX_PROCESS_MEDIANS)
    assert many == [2.0] * MAX_PROCESS_MEDIANS
    # A baseline from before process medians were kept counts as its median.
    assert extended_medians({"median": 1.0, "compiles": 1}, {"compiles": 1}, [1.1]) == [1.0, 1.1]
    with pytest.raises(
        ProgramChanged, match=r"program changed since it was recorded \(FLOPs 2\.000e\+06 vs baseline 1"
    ):
        extended_medians(stored, {"compiles": 1, "metrics": {"flops": 2e6}}, [1.0])
    with pytest.raises(ProgramChanged, match="compiles 2 vs baseline 1"):
        extended_medians(stored, {"compiles": 2, "metrics": {"flops": 1e6}}, [1.0])
    # The same work fused otherwise is another program too.
    fused = {**stored, "metrics": {"flops": 1e6, "hlo_fingerprint": "aaaa"}}
    refused = {"compiles": 1, "metrics": {"flops": 1e6, "hlo_fingerprint": "bbbb"}}
    with pytest.raises(ProgramChanged, match="optimized HLO fingerprint bbbb vs baseline aaaa"):
        extended_medians(fused, refused, [1.0])
    assert extended_medians(fused, {**refused, "metrics": fused["metrics"]}, [1.0]) == [0.9, 1.0, 1.1, 1.0]


def test_median_ci_covers_the_median() -> None:
    rng = np.random.default_rng(1)
    samples = list(rng.lognormal(0, 0.2, 500))
    low, high = median_ci(samples)
    assert low < float(np.median(samples)) < high
    # About 95% coverage of the true median (1.0) over repeated samples.
    covered = sum(
        lo <= 1.0 <= hi for lo, hi in (median_ci(list(rng.lognormal(0, 0.2, 200))) for _ in range(400))
    )
    assert 0.9 < covered / 400 <= 1.0


def test_ratio_ci_from_a_sketch_uses_the_real_sample_count() -> None:
    rng = np.random.default_rng(2)
    full = rng.lognormal(0, 0.3, 5000)
    sketch = list(np.quantile(full, np.linspace(0, 1, 41)))
    naive = ratio_ci(sketch, sketch)
    sized = ratio_ci(sketch, sketch, sizes=(5000, 5000))
    assert sized[1] - sized[0] < (naive[1] - naive[0]) / 3
    assert sized[0] < 1.0 < sized[1]


@settings(deadline=None, max_examples=200)
@given(st.text(min_size=1, max_size=60))
def test_module_file_names_never_escape(module: str) -> None:
    name = module_file_name(module)
    assert "/" not in name
    assert "\\" not in name
    assert not name.startswith(".")
    assert name.endswith(".json")
    assert all(c.isascii() and (c.isalnum() or c in "._-") for c in name)


def test_distinct_modules_get_distinct_files() -> None:
    assert module_file_name("a/b.py") != module_file_name("a.b.py")
    assert module_file_name("tests/test_x.py").startswith("tests.test_x.py-")
    assert environment_id(FINGERPRINT).startswith("cpu-cpu-x1-")


def test_stable_numbers_and_dumps() -> None:
    assert stable_numbers({"a": [0.123456789, 1, float("inf")]}) == {"a": [0.123457, 1, float("inf")]}
    text = dumps({"b": 1.0 / 3, "a": "é"})
    assert text == '{\n "a": "é",\n "b": 0.333333\n}\n'


def test_store_round_trip_merges_and_reports_corrupt_files(tmp_path: Path) -> None:
    store = BaselineStore(tmp_path, FINGERPRINT)
    measured = {"samples": [1.0], "noise_floor": 0.01}
    path = store.write("tests/test_x.py", {"test_a::m": {"median": 1.0, **measured}})
    store.write("tests/test_x.py", {"test_b::m": {"median": 2.0, **measured}})
    assert sorted(read_file(path).records) == ["test_a::m", "test_b::m"]
    assert store.lookup("tests/test_x.py", "test_a::m").status == "found"
    assert store.lookup("tests/test_x.py", "test_c::m").status == "new"
    # Another jax: the program replays, absolute times and the exact figures are not compared.
    other = BaselineStore(tmp_path, {**FINGERPRINT, "jax": "0.11.2"})
    lookup = other.lookup("tests/test_x.py", "test_a::m")
    assert lookup.status == "found"
    assert lookup.path == path
    assert not lookup.comparability.times
    assert not lookup.comparability.exact
    assert "jax: '0.10.2' there, '0.11.2' here" in lookup.comparability.why_not
    # Another CPU model: the exact figures too.
    elsewhere = BaselineStore(tmp_path, {**FINGERPRINT, "cpu_model": "Another CPU"}).lookup(
        "tests/test_x.py", "test_a::m"
    )
    assert elsewhere.status == "found"
    assert elsewhere.comparability.exact
    assert not elsewhere.comparability.times
    # Another backend: another program, nothing compared.
    lookup = BaselineStore(tmp_path, {**FINGERPRINT, "backend": "gpu"}).lookup("tests/test_x.py", "test_a::m")
    assert lookup.status == "not comparable"
    assert "backend: 'cpu' there, 'gpu' here" in lookup.reason
    path.write_text(path.read_text()[:40])
    fresh = BaselineStore(tmp_path, FINGERPRINT)
    with pytest.raises(BaselineError, match="is corrupt or truncated"):
        fresh.lookup("tests/test_x.py", "test_a::m")
    with pytest.raises(BaselineError, match="is corrupt or truncated"):
        fresh.write("tests/test_x.py", {"test_a::m": {"median": 3.0}})
    assert len(path.read_text()) == 40  # left as it was
    assert json.loads(dumps({"x": 1}))["x"] == 1


def test_hlo_normalization_drops_locations_and_tuning() -> None:
    text = (
        'HloModule jit_f\n\nFileNames\n1 "/home/me/x.py"\n\n'
        "ENTRY %main (p: f32[4]) -> f32[4] {\n"
        "  %p = f32[4]{0} parameter(0)\n"
        '  %f = f32[4]{0} fusion(%p), kind=kLoop, calls=%c, metadata={op_name="jit(f)/add" '
        'source_file="/home/me/x.py" source_line=3}, backend_config={"a":{"b":1}}\n'
        '  ROOT %cc = f32[4]{0} custom-call(%f), custom_call_target="x"\n}\n'
    )
    normalized = normalized_hlo(text)
    assert "x.py" not in normalized
    assert "backend_config" not in normalized
    assert hlo_counts(normalized) == (2, 1, 1)


def test_peak_table_matches_device_kinds() -> None:
    h100 = known_peak("NVIDIA H100 80GB HBM3")
    assert h100 is not None
    assert h100.bytes_per_second == 3.35e12
    h200 = known_peak("NVIDIA H200")
    assert h200 is not None
    assert h200.bytes_per_second == 4.8e12
    assert known_peak("cpu") is None


def test_the_machine_noise_floor_is_the_median_of_a_recordings_floors() -> None:
    from pytest_jaxperf.noise import noise_floor_of_run

    assert noise_floor_of_run([0.02, 0.1, 0.06, 0.0]) == pytest.approx(0.06)
    assert noise_floor_of_run([0.02, 0.1]) == 0.0  # too few measurements to speak for the machine


@pytest.mark.parametrize(
    ("ratio", "low", "high", "same", "status"),
    [
        (1.06, 1.04, 1.08, False, "regressed"),  # beyond half the threshold, interval above 1
        (1.03, 1.01, 1.05, False, "regressed"),  # a 3 % change seen precisely
        (1.03, 0.99, 1.07, False, "inconclusive"),  # beyond half, but 1 still inside, and 5 % too
        (1.01, 0.99, 1.03, False, "pass"),  # the interval rules out 5 %
        (0.94, 0.92, 0.96, False, "improved"),
        (1.10, 1.08, 1.12, True, "pass"),  # two identical programs: their difference is noise
        (1.00, 0.80, 1.20, True, "pass"),  # however wide their interval
        (1.00, 0.90, 1.10, False, "inconclusive"),
    ],
)
def test_replay_status(ratio: float, low: float, high: float, same: bool, status: str) -> None:
    assert replay_status(ReplayFigures(ratio, low, high, 10, same), 0.05) == status


def test_a_replay_decides_the_timing_and_the_exact_tier_still_fails() -> None:
    base = {"median": 1.0, "items_per_call": 1, "noise_floor": 0.01, "compiles": 1, "metrics": {"flops": 100}}
    current = {"median": 1.5, "items_per_call": 1, "compiles": 1, "metrics": {"flops": 100}}
    samples = [1.5] * 20
    replayed = ReplayFigures(1.01, 0.99, 1.03, 8, False)
    judged = verdict(current, base, samples, [1.0] * 20, replay=replayed)
    # 50 % slower across processes, the same in the replay: the machine, not the program.
    assert (judged.status, judged.decided_by, judged.cross_process) == ("pass", "replay", "regressed")
    assert judged.ratio == pytest.approx(1.5)
    assert judged.reason.startswith("replay +1.0% against the baseline's own program")
    assert (judged.detectable, judged.threshold) == (0.05, 0.05)
    more_flops = verdict({**current, "metrics": {"flops": 200}}, base, samples, [1.0] * 20, replay=replayed)
    assert (more_flops.status, more_flops.decided_by) == ("regressed", "exact")
    # The same optimized program: more FLOPs before XLA optimized it (an optimization barrier it removed)
    # is no regression, and says so; a compile more still is one.
    same = ReplayFigures(1.01, 0.99, 1.03, 8, True)
    barrier = verdict({**current, "metrics": {"flops": 200}}, base, samples, [1.0] * 20, replay=same)
    assert (barrier.status, barrier.decided_by) == ("pass", "replay")
    said = barrier.reason.split("; cross-process: ")[1].split(" — ")[1]
    assert said == (
        "FLOPs 200 vs baseline 100 (+100.0%) before XLA optimized the program, which came out the "
        "baseline's: not a change of the program"
    )
    recompiled = verdict({**current, "compiles": 2}, base, samples, [1.0] * 20, replay=same)
    assert (recompiled.status, recompiled.decided_by) == ("regressed", "exact")
    # Memory is the check's own compiled program's (a donation lost shows there, not in the replayed
    # export): it still regresses with the same program; fewer FLOPs is no improvement of it either.
    with_memory = {**base, "metrics": {"flops": 100, "memory_bytes": 1000}}
    lost_donation = {**current, "metrics": {"flops": 100, "memory_bytes": 2000}}
    judged = verdict(lost_donation, with_memory, samples, [1.0] * 20, replay=same)
    assert (judged.status, judged.decided_by) == ("regressed", "exact")
    fewer = verdict({**current, "metrics": {"flops": 50}}, base, samples, [1.0] * 20, replay=same)
    assert fewer.deterministic == ()
    assert "FLOPs 50 vs baseline 100 (−50.0%) before XLA optimized the program" in fewer.reason
    # Another CPU model: no absolute time compared, the replay decides.
    elsewhere = Comparability(times=False, why_not="recorded with cpu_model: 'A' there, 'B' here")
    judged = verdict(current, base, samples, [1.0] * 20, replay=replayed, comparability=elsewhere)
    assert (judged.status, judged.cross_process, judged.ratio) == ("pass", "not compared", None)
    assert judged.recorded_elsewhere == elsewhere.why_not
    # Without a replay, no time to compare: the exact tier alone.
    alone = verdict(current, base, samples, [1.0] * 20, comparability=elsewhere)
    assert (alone.status, alone.decided_by) == ("pass", "exact")
    assert "absolute times not compared" in alone.reason
    # Another jax and no replay: nothing was compared, which no pass may hide.
    other_jax = Comparability(times=False, exact=False, why_not="recorded with jax: '0.10.2' there")
    nothing = verdict({**current, "compiles": 2}, base, samples, [1.0] * 20, comparability=other_jax)
    assert nothing.status == "not comparable"
    assert nothing.reason.startswith("baseline recorded with jax: '0.10.2' there: exact figures and absolute")
