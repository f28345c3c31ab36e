"""Nothing lost, nothing silently wrong: the baseline store under concurrent recorders, bad contents, write
errors and interrupts. Each case was reproduced against the store before it was mended."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import globs

# Eight measured checks in one module: each recorder records its own share of them into the same file.
EIGHT = """
import jax
import jax.numpy as jnp
import pytest


@pytest.mark.parametrize("n", range(8))
def test_scaled(jaxperf, n):
    jaxperf.measure(jax.jit(lambda x: x * n), jnp.ones((256,)), name=f"scaled{n}")
"""


def baseline_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file())


def records_in(directory: Path) -> dict[str, dict[str, object]]:
    """Every record of every baseline file under ``directory`` (each file must be valid JSON)."""
    found: dict[str, dict[str, object]] = {}
    for path in directory.rglob("*.json"):
        found.update(json.loads(path.read_text(encoding="utf-8"))["records"])
    return found


@pytest.mark.parametrize("recorders", [2, 4])
def test_concurrent_recorders_keep_every_record(jaxperf_pytester: pytest.Pytester, recorders: int) -> None:
    jaxperf_pytester.makepyfile(test_eight=EIGHT)
    shares = [[n for n in range(8) if n % recorders == i] for i in range(recorders)]
    recording = [sys.executable, "-m", "pytest", "test_eight.py", "-q", "--jaxperf-update-baselines"]
    commands = [
        [*recording, "--jaxperf-repeat=1", "-k", " or ".join(f"test_scaled[{n}]" for n in share)]
        for share in shares
    ]
    processes = [
        jaxperf_pytester.popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        for command in commands
    ]
    outputs = [process.communicate(timeout=600)[0].decode() for process in processes]
    for process, output in zip(processes, outputs, strict=True):
        assert process.returncode == 0, output
    recorded = records_in(jaxperf_pytester.path / "baselines")
    assert sorted(recorded) == sorted(f"test_scaled[{n}]::scaled{n}" for n in range(8)), outputs
    # Nothing but the baselines is left in the folder a user commits.
    assert [p.suffix for p in baseline_files(jaxperf_pytester.path / "baselines")] == [".json"], outputs


def test_a_partial_file_a_killed_writer_left_is_removed_by_the_next(tmp_path: Path) -> None:
    from pytest_jaxperf.baseline import BaselineStore
    from pytest_jaxperf.writable import TEMPORARY_PREFIX

    store = BaselineStore(tmp_path, {"backend": "cpu"})
    stale = store.environment_dir / f"{TEMPORARY_PREFIX}test_x.py-abc.json.k3j2"
    stale.parent.mkdir(parents=True)
    stale.write_text('{"records": {"half')
    path = store.write("test_x.py", {"test_x.py::f": {"median": 1.0, "samples": [1.0], "noise_floor": 0.0}})
    assert sorted(p.name for p in store.environment_dir.iterdir()) == [path.name]


# Each write of a baseline or an output file goes through write_atomically: this conftest makes the ones
# named fail as a full disk does, or interrupts the run at the first baseline write, as Ctrl-C would.
FAULTS = """
import errno
import os
import signal

import pytest_jaxperf.writable as writable
import pytest_jaxperf.recording as recording

FULL = os.environ.get("FAULT_FULL", "")
real_write = writable.write_atomically


def write_atomically(path, text):
    if FULL and FULL in path.name:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))
    if os.environ.get("FAULT_INTERRUPT") and path.suffix == ".json" and "baselines" in str(path):
        os.kill(os.getpid(), signal.SIGINT)
    return real_write(path, text)


writable.write_atomically = write_atomically


def run_pytest(*args, **kwargs):
    raise KeyboardInterrupt


if os.environ.get("FAULT_NOISE_FLOOR"):
    recording.run_pytest = run_pytest
"""

MEASURED = """
import jax
import jax.numpy as jnp


def test_measured(jaxperf):
    jaxperf.measure(jax.jit(jnp.sum), jnp.ones((64,)))
"""


def faulty(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(FAULTS)
    pytester.makepyfile(test_full=MEASURED, test_fine=MEASURED)
    return pytester


def test_a_file_that_cannot_be_written_is_said_and_the_rest_are_written(
    jaxperf_pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    faulty(jaxperf_pytester)
    monkeypatch.setenv("FAULT_FULL", "test_full")
    result = jaxperf_pytester.runpytest_subprocess(
        "--jaxperf-update-baselines", "--jaxperf-repeat=1", "--jaxperf-json=results.json"
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*jaxperf*",  # the summary is printed
            "jaxperf: 1 baseline(s) written to *test_fine.py-*.json",
            "jaxperf: 1 baseline(s) of test_full.py NOT written to *test_full.py-*.json: No space left on "
            "device; the file is as it was",
            "jaxperf: results written to *results.json",
        ]
    )
    assert [p.name.split("-")[0] for p in (jaxperf_pytester.path / "baselines").rglob("*.json")] == [
        "test_fine.py"
    ]
    # The output files fail alike: said, and the run fails.
    monkeypatch.setenv("FAULT_FULL", "results")
    result = jaxperf_pytester.runpytest_subprocess("--jaxperf", "--jaxperf-json=results.json")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["jaxperf: results NOT written to *results.json: No space left on device"])


def interrupted_recording(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, fault: str, repeat: int
) -> pytest.RunResult:
    """A recording of ``repeat`` processes with the FAULTS conftest's ``fault`` on: it ends interrupted."""
    faulty(pytester)
    monkeypatch.setenv(fault, "1")
    result = pytester.runpytest_subprocess("--jaxperf-update-baselines", f"--jaxperf-repeat={repeat}")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    return result


def test_ctrl_c_while_writing_finishes_the_writing_and_says_so(
    jaxperf_pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = interrupted_recording(jaxperf_pytester, monkeypatch, "FAULT_INTERRUPT", repeat=1)
    result.stdout.fnmatch_lines(
        ["jaxperf: interrupted while writing baselines; the writing was finished first*"]
    )
    result.stdout.no_fnmatch_line("*KeyboardInterrupt*")
    assert len(list((jaxperf_pytester.path / "baselines").rglob("*.json"))) == 2


def test_ctrl_c_during_the_noise_floor_runs_writes_nothing_and_says_so(
    jaxperf_pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = interrupted_recording(jaxperf_pytester, monkeypatch, "FAULT_NOISE_FLOOR", repeat=2)
    result.stdout.fnmatch_lines(["jaxperf: interrupted during the noise-floor runs; no baseline was written"])
    result.stdout.no_fnmatch_line("*Traceback*")
    assert not (jaxperf_pytester.path / "baselines").exists()


@pytest.mark.parametrize(
    ("option", "value", "why"),
    [
        ("--jaxperf-json", "notes.txt/results.json", "*notes.txt is a file, not a folder"),
        ("--jaxperf-markdown", "reports", "it is a folder"),
        ("--jaxperf-benchmark-json", "notes.txt/bench.json", "*notes.txt is a file, not a folder"),
    ],
)
def test_an_output_that_cannot_be_written_is_a_usage_error_before_any_test_runs(
    jaxperf_pytester: pytest.Pytester, option: str, value: str, why: str
) -> None:
    jaxperf_pytester.makepyfile(test_measured=MEASURED)
    (jaxperf_pytester.path / "notes.txt").write_text("notes")
    (jaxperf_pytester.path / "reports").mkdir()
    result = jaxperf_pytester.runpytest_subprocess("--jaxperf-update-baselines", f"{option}={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*jaxperf: {option} *{value} cannot be written: {why}; nothing was run"])
    assert not (jaxperf_pytester.path / "baselines").exists()


def test_jaxperf_report_checks_its_output_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pytest_jaxperf.cli import EXIT_MISUSE, main

    (tmp_path / "notes.txt").write_text("notes")
    code = main(["report", str(tmp_path / "missing.json"), "-o", str(tmp_path / "notes.txt" / "page.html")])
    assert code == EXIT_MISUSE
    assert "is a file, not a folder" in capsys.readouterr().err


def children_of(pid: int) -> list[int]:
    """The live processes whose parent is ``pid`` (from /proc: Linux)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[1] == str(pid) and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(sys.platform != "linux", reason="the kernel's parent-death signal is Linux's")
def test_a_killed_recorder_takes_its_children_along_and_leaves_nothing_behind(
    jaxperf_pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    # The noise-floor process measures for a minute, long after its parent is gone unless it dies with it.
    slow_in_the_noise_floor_run = (
        "import os, time\nif os.environ.get('JAXPERF_REPEAT_CHILD') and os.path.exists('slow'):\n"
        "    time.sleep(60)\n"
    )
    (jaxperf_pytester.path / "slow").touch()
    jaxperf_pytester.makepyfile(test_measured=slow_in_the_noise_floor_run + MEASURED)
    # Wide limits allowed: jaxperf.measure stores no program, and two processes timing a 10 µs call on a
    # busy runner can spread beyond the ceiling, which would refuse the record this test is not about.
    record = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "--jaxperf-update-baselines",
        "--jaxperf-allow-wide-limits",
    ]
    devnull = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "stdin": subprocess.DEVNULL}
    log = tmp_path / "killed.log"
    with log.open("w") as output:
        killed = jaxperf_pytester.popen(
            [*record, "--jaxperf-repeat=3"], stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    deadline = time.monotonic() + 300
    while not children_of(killed.pid) and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    noise_floor_runs = children_of(killed.pid)
    assert noise_floor_runs, f"the recording started no noise-floor process:\n{log.read_text()}"
    killed.kill()  # SIGKILL: no handler runs, nothing is cleaned up by the process itself
    killed.wait()
    deadline = time.monotonic() + 20
    while any(running(pid) for pid in noise_floor_runs) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(running(pid) for pid in noise_floor_runs), "a noise-floor process outlived its parent"
    assert list(scratch.glob(f"jaxperf-repeat-*-{killed.pid}-*"))  # what the killed run left
    # The next recording removes it, and writes its baselines.
    (jaxperf_pytester.path / "slow").unlink()
    done = jaxperf_pytester.popen([*record, "--jaxperf-repeat=2"], **devnull)
    assert done.wait(timeout=300) == 0
    assert not list(scratch.glob("jaxperf-repeat-*"))
    assert [p.suffix for p in baseline_files(jaxperf_pytester.path / "baselines")] == [".json"]


def recorded(pytester: pytest.Pytester) -> Path:
    """The one baseline file a recording of MEASURED wrote."""
    pytester.makepyfile(test_measured=MEASURED)
    result = pytester.runpytest_subprocess("--jaxperf-update-baselines", "--jaxperf-repeat=1")
    assert result.ret == 0, result.stdout.str()
    (path,) = (pytester.path / "baselines").rglob("*.json")
    return path


def edit_record(path: Path, edit: object) -> str:
    """Apply ``edit`` (a callable on the record's dict, or a replacement) to the file's one record; the
    file's text afterwards (Python's json writes NaN and Infinity as such, as a hand edit could)."""
    document = json.loads(path.read_text(encoding="utf-8"))
    (key,) = document["records"]
    if callable(edit):
        edit(document["records"][key])
    else:
        document["records"][key] = edit
    path.write_text(json.dumps(document), encoding="utf-8")
    return path.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda r: r.update(median=float("inf")), "has a median of inf, not a positive number of seconds"),
        (lambda r: r.update(median=-1), "has a median of -1, not a positive number of seconds"),
        (lambda r: r.update(median="fast"), "has a median of 'fast', not a positive number of seconds"),
        (lambda r: r.pop("median"), "has no median"),
        (lambda r: r.pop("samples"), "has no samples"),
        (lambda r: r.update(samples=[]), "has samples [], not a list of positive numbers of seconds"),
        (
            lambda r: r.update(noise_floor=float("inf")),
            "has noise_floor inf, not a finite number of at least 0",
        ),
        ([1, 2], "is [1, 2], not a record (an object of fields)"),
    ],
)
def test_a_record_that_is_no_measurement_fails_its_check_naming_file_and_key(
    jaxperf_pytester: pytest.Pytester, edit: object, problem: str
) -> None:
    path = recorded(jaxperf_pytester)
    text = edit_record(path, edit)
    result = jaxperf_pytester.runpytest_subprocess("--jaxperf")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        globs(f"*jaxperf: baseline file *{path.name}: record 'test_measured::sum' {problem}*")
    )
    result.stdout.no_fnmatch_line("*Traceback*")
    assert path.read_text(encoding="utf-8") == text  # left as it is


def test_extending_a_record_of_nan_medians_refuses_it_and_keeps_the_file(
    jaxperf_pytester: pytest.Pytester,
) -> None:
    path = recorded(jaxperf_pytester)
    text = edit_record(path, lambda r: r.update(process_medians=[float("nan")] * 3))
    result = jaxperf_pytester.runpytest_subprocess("--jaxperf-extend-baselines", "--jaxperf-repeat=1")
    # The check looks its baseline up first: it fails there, and nothing is recorded from it.
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        globs(
            "*record 'test_measured::sum' has process_medians [nan, nan, nan], not a list of positive "
            "numbers of seconds*"
        )
    )
    assert path.read_text(encoding="utf-8") == text


def test_a_record_that_is_no_measurement_is_never_written(tmp_path: Path) -> None:
    from pytest_jaxperf.baseline import BaselineStore
    from pytest_jaxperf.errors import BaselineError

    store = BaselineStore(tmp_path, {"backend": "cpu"})
    good = {"median": 1e-3, "samples": [1e-3], "noise_floor": 0.01}
    path = store.write("test_x.py", {"a": good})
    before = path.read_text(encoding="utf-8")
    with pytest.raises(BaselineError, match=r"refusing to write record 'b' .*has a median of nan"):
        store.write("test_x.py", {"b": {**good, "median": float("nan")}})
    assert path.read_text(encoding="utf-8") == before
    assert "NaN" not in before
    nested = {**good, "metrics": {"flops": float("inf")}}
    with pytest.raises(
        BaselineError, match=r"record 'c' field metrics.flops is not finite; the file was kept"
    ):
        store.write("test_x.py", {"c": nested})


FAILING_AFTER_MEASURING = """
import jax
import jax.numpy as jnp


def test_measured_then_failed(jaxperf):
    jaxperf.measure(jax.jit(jnp.sum), jnp.ones((64,)), name="failed")
    raise AssertionError("the model's output is wrong")


def test_measured(jaxperf):
    jaxperf.measure(jax.jit(jnp.sum), jnp.ones((64,)), name="fine")
"""


def test_a_failed_tests_measurements_are_marked_and_never_recorded(jaxperf_pytester: pytest.Pytester) -> None:
    jaxperf_pytester.makepyfile(test_failing=FAILING_AFTER_MEASURING)
    result = jaxperf_pytester.runpytest_subprocess(
        "--jaxperf-update-baselines", "--jaxperf-repeat=1", "--jaxperf-json=results.json"
    )
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            "*measured_then_failed*fp32-d1*failed*test failed",
            "jaxperf: 1 measurement(s) of failed tests not recorded: test_failing.py::test_measured_then_*",
            "jaxperf: 1 baseline(s) written to *",
            "jaxperf: 0 regressed, 1 new, 1 test failed",  # the last word
        ]
    )
    assert list(records_in(jaxperf_pytester.path / "baselines")) == ["test_measured::fine"]
    document = json.loads((jaxperf_pytester.path / "results.json").read_text(encoding="utf-8"))
    statuses = {r["key"]: r["verdict"]["status"] for r in document["records"] if r.get("verdict")}
    assert statuses["failed"] == "test failed"


# Python scalars in the example call are static arguments: never generated, never a recompile.
SCALARS = """
import jax.numpy as jnp
import pytest

import pytest_jaxperf as jaxperf


@jaxperf.jit_warm
@jaxperf.dtype("fp32", "bf16", max_examples=5)
def test_scalar_beside_an_array(jaxperf):
    record = jaxperf.check(lambda x, scale: x * scale, jnp.linspace(-1.0, 1.0, 8), 3.0)
    assert record.compiles == 1


@jaxperf.dtype("fp32", "bf16")
def test_a_scalar_alone(jaxperf):
    with pytest.raises(TypeError, match=r"needs at least one example input .*model\\(3.0\\)"):
        jaxperf.check(lambda x: x * 2.0, 3.0)
"""


def test_python_scalars_are_static_under_every_dtype(jaxperf_pytester: pytest.Pytester) -> None:
    jaxperf_pytester.makepyfile(test_scalars=SCALARS)
    jaxperf_pytester.runpytest_subprocess().assert_outcomes(passed=4)


NOT_FINITE = """
import jax.numpy as jnp


def test_nan_output(jaxperf):
    jaxperf.check(lambda x: {"logits": jnp.log(x - 1.0), "fine": x}, jnp.linspace(0.0, 2.0, 8))


def test_masked_logits(jaxperf):
    jaxperf.check(lambda x: jnp.where(x > 1.0, x, -jnp.inf), jnp.linspace(0.0, 2.0, 8))
"""


def test_a_model_whose_output_is_nan_fails_unless_allowed(jaxperf_pytester: pytest.Pytester) -> None:
    jaxperf_pytester.makepyfile(test_nan=NOT_FINITE)
    result = jaxperf_pytester.runpytest_subprocess()
    result.assert_outcomes(failed=1, passed=1)  # -inf in masked logits is by design
    result.stdout.fnmatch_lines(
        globs(
            "*jaxperf fp32-d1: <lambda> on its example inputs: output ['logits'] holds 4 NaN of 8 values."
            " A model whose output is NaN gives no figure worth gating "
            "(jaxperf_allow_nan = true in the ini file allows it)"
        )
    )
    jaxperf_pytester.makeini(
        "[pytest]\naddopts = -p no:cacheprovider -p no:randomly\njaxperf_allow_nan = true\n"
    )
    jaxperf_pytester.runpytest_subprocess().assert_outcomes(passed=2)


# A timing expectation is judged on its interval: false only where the whole interval says so.
EXPECTATIONS = """
import pytest

from pytest_jaxperf.core.timing import Comparison
from pytest_jaxperf.gating import JaxperfInconclusive


def comparison(low, high):
    ratio = (low + high) / 2
    return Comparison("eager", "jit", 1.0, ratio, ratio, low, high, 20)


def test_holds(jaxperf):
    assert jaxperf.expect_faster(comparison(0.5, 0.9)) == "holds"


def test_too_busy_to_tell(jaxperf):
    with pytest.warns(JaxperfInconclusive, match=r"inconclusive: jit.s speed-up over eager"):
        assert jaxperf.expect_faster(comparison(0.3, 1.1)) == "inconclusive"


def test_false(jaxperf):
    jaxperf.expect_faster(comparison(1.05, 1.2))


def test_at_least(jaxperf):
    assert jaxperf.expect_at_least((0.9, 0.86, 0.95), 0.85, "throughput ratio") == "holds"
    jaxperf.expect_at_least((0.7, 0.6, 0.8), 0.85, "throughput ratio", "the sweep's table")
"""


def test_timing_expectations_fail_only_on_evidence(jaxperf_pytester: pytest.Pytester) -> None:
    jaxperf_pytester.makepyfile(test_expectations=EXPECTATIONS)
    result = jaxperf_pytester.runpytest_subprocess()
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*jaxperf fp32-d1: jit's speed-up over eager: 0.889 (95% CI 0.833…0.952), expected at least 1",
            "*jaxperf fp32-d1: throughput ratio: 0.700 (95% CI 0.600…0.800), expected at least 0.85",
            "the sweep's table",
        ]
    )


GOOD = {"median": 1e-3, "samples": [1e-3], "noise_floor": 0.01}


def test_a_writer_merges_into_what_another_wrote_since_it_read(tmp_path: Path) -> None:
    from pytest_jaxperf.baseline import BaselineStore, read_file

    fingerprint = {"backend": "cpu"}
    first, second = BaselineStore(tmp_path, fingerprint), BaselineStore(tmp_path, fingerprint)
    path = first.write("test_x.py", {"a": GOOD})
    assert first.lookup("test_x.py", "a").status == "found"  # the file is now cached in `first`
    second.write("test_x.py", {"b": GOOD})
    first.write("test_x.py", {"c": GOOD})  # merged into its stale copy, it would lose b
    assert sorted(read_file(path).records) == ["a", "b", "c"]


def test_a_lock_held_too_long_is_said_not_waited_for_forever(tmp_path: Path) -> None:
    from pytest_jaxperf.errors import BaselineError
    from pytest_jaxperf.writable import locked

    held_elsewhere = pytest.raises(BaselineError, match="stayed locked by another recorder for 0 s")
    with locked(tmp_path), held_elsewhere, locked(tmp_path, wait_seconds=0.2):
        pass
