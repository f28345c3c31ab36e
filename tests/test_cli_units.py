"""The `jaxperf` command's pure logic: the A/B statistics and verdicts, the results reader, the comparison,
the report page and the baselines' history. Plain unit tests: nothing here runs a test session."""

from __future__ import annotations

import argparse
import dataclasses
import html.parser
import json
import math
from pathlib import Path

import pytest

from pytest_jaxperf import ab, cli, page, page_history, page_labels, page_render, plots
from pytest_jaxperf.comparison import ONLY_IN_A, ONLY_IN_B, any_regressed, compare_results
from pytest_jaxperf.gate_notes import gate_lines
from pytest_jaxperf.recording import limit_line
from pytest_jaxperf.records import CheckRecord, FigureRecord
from pytest_jaxperf.report import drift_lines, markdown_summary, summary_lines
from pytest_jaxperf.results import (
    JSON_SCHEMA_VERSION,
    ResultsError,
    baseline_history,
    load_results,
    results_json,
)
from pytest_jaxperf.rows import verdict_counts
from pytest_jaxperf.settings import PluginSettings

from .conftest import git

# --- ab: statistics and verdicts ------------------------------------------------------------------


def test_ratio_is_the_ratio_of_geometric_means_with_an_interval_around_it():
    a = [1.00, 1.04, 0.97, 1.02, 0.99]
    b = [x * 1.2 for x in reversed(a)]
    estimate = ab.ratio_of_medians(a, b)
    assert estimate.ratio == pytest.approx(1.2)
    assert estimate.ci_low < 1.2 < estimate.ci_high
    assert estimate.ci_low > 1.1  # a 3% spread cannot hide a 20% change
    assert estimate.rounds == 5


def test_ratio_without_spread_is_exact_and_needs_two_rounds():
    estimate = ab.ratio_of_medians([2.0, 2.0], [3.0, 3.0])
    assert (estimate.ratio, estimate.ci_low, estimate.ci_high) == pytest.approx((1.5, 1.5, 1.5))
    with pytest.raises(ValueError, match="at least 2 rounds"):
        ab.ratio_of_medians([1.0], [1.0])


def test_interval_widens_with_the_spread_between_processes():
    steady = ab.ratio_of_medians([1.0, 1.01, 0.99, 1.0, 1.0], [1.1, 1.11, 1.09, 1.1, 1.1])
    noisy = ab.ratio_of_medians([1.0, 1.2, 0.85, 1.1, 0.9], [1.1, 1.3, 0.95, 1.25, 0.95])
    assert noisy.ci_high - noisy.ci_low > 3 * (steady.ci_high - steady.ci_low)


@pytest.mark.parametrize(
    ("ratio", "low", "high", "status"),
    [
        (1.10, 1.04, 1.16, ab.REGRESSED),  # beyond 5% and surely above 1
        (1.10, 0.98, 1.23, ab.INCONCLUSIVE),  # beyond 5% but the interval reaches 1
        (1.03, 1.01, 1.05, ab.PASS),  # a sure change, smaller than the threshold
        (0.80, 0.75, 0.86, ab.IMPROVED),
        (0.90, 0.80, 1.02, ab.INCONCLUSIVE),
        (1.00, 0.95, 1.05, ab.PASS),
    ],
)
def test_ratio_verdict(ratio, low, high, status):
    assert ab.ratio_verdict(ab.RatioEstimate(ratio, low, high, 5), threshold=0.05) == status


def _run(side, index, outcomes, medians):
    return ab.SideRun(side, index, 1.0, 0, outcomes, medians)


def test_summarize_reports_failures_and_one_sided_tests_not_timings():
    passed = ("passed", "")
    runs = []
    for index in range(3):
        runs.append(
            _run(
                "A",
                index,
                {"t::same": passed, "t::breaks": passed, "t::fixed": ("failed", "assert 0"), "t::old": passed,
                 "t::plain": passed, "t::skip": ("skipped", "no gpu")},
                {("t::same", "f"): 1.0 + 0.01 * index, ("t::breaks", "f"): 1.0, ("t::slow", "g"): 1.0},
            )
        )  # fmt: skip
        runs.append(
            _run(
                "B",
                index,
                {"t::same": passed, "t::breaks": ("failed", "AssertionError: boom"), "t::fixed": passed,
                 "t::new": passed, "t::plain": passed, "t::skip": ("skipped", "no gpu")},
                {("t::same", "f"): 1.0 + 0.01 * (2 - index), ("t::fixed", "f"): 1.0, ("t::slow", "g"): 3.0},
            )
        )  # fmt: skip
    rows = {(r.nodeid, r.key): r for r in ab.summarize(runs)}
    assert rows[("t::breaks", "")].status == ab.FAILED_ON_B
    assert "AssertionError: boom" in rows[("t::breaks", "")].reason
    assert "3 of 3" in rows[("t::breaks", "")].reason
    assert rows[("t::fixed", "")].status == ab.FAILED_ON_A
    assert rows[("t::new", "")].status == ONLY_IN_B
    assert rows[("t::old", "")].status == ONLY_IN_A
    assert rows[("t::same", "f")].status == ab.PASS
    assert rows[("t::slow", "g")].status == ab.REGRESSED
    assert rows[("t::plain", "")].status == ab.NOT_MEASURED
    assert "skipped" in rows[("t::skip", "")].reason
    # A failing test's timings are not judged: its failure is the news.
    assert ("t::breaks", "f") not in rows
    assert ("t::fixed", "f") not in rows
    report = ab.AbReport("main", "0" * 40, [], 3, 0.05, runs, list(rows.values()))
    assert report.failing
    assert json.loads(json.dumps(report.to_dict()))["rows"]


# --- the command's argument types -------------------------------------------------------------------


@pytest.mark.parametrize(("text", "value"), [("0.05", 0.05), ("5%", 0.05), ("12.5%", 0.125)])
def test_fraction_accepts_fractions_and_percentages(text, value):
    assert cli.fraction(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["abc", "0", "1", "150%", "-0.1"])
def test_fraction_names_the_bad_value(text):
    with pytest.raises(argparse.ArgumentTypeError, match=repr(text).replace("%", "%")):
        cli.fraction(text)


@pytest.mark.parametrize("text", ["1", "0", "x", "2.5"])
def test_rounds_needs_a_whole_number_of_at_least_two(text):
    with pytest.raises(argparse.ArgumentTypeError, match=text if text != "1" else "1 round"):
        cli.rounds(text)


# --- results files and comparison ------------------------------------------------------------------


def check(nodeid, median, *, key="Decoder", variant="fp32-d1", items=64, flops=1e6, samples=None, **extra):
    samples = samples or [median * (1 + 0.01 * ((i % 5) - 2)) for i in range(50)]
    timing = {
        "median": median,
        "samples": samples,
        "sample_count": len(samples),
        "items_per_call": items,
        "ci_low": median * 0.99,
        "ci_high": median * 1.01,
        "mode": "throughput",
        "throughput": items / median,
    }
    return CheckRecord(nodeid, variant, "Decoder", "[0]: f32[64,32]", True, 1, 0.1, 0.2, (), key=key,
                       timing=timing, metrics={"flops": flops, "argument_bytes": 1000, "output_bytes": 200,
                                               "temp_bytes": 300}, **extra)  # fmt: skip


def write_results(path: Path, records) -> Path:
    path.write_text(json.dumps(results_json(records, "backend cpu")))
    return path


def test_load_results_round_trips(tmp_path):
    records = [check("t.py::test_a", 0.001), FigureRecord("t.py::test_a", "fp32-d1", "x", 1.0, "ms")]
    results = load_results(write_results(tmp_path / "r.json", records))
    assert results.records == tuple(records)
    assert list(results.measured) == [("t.py::test_a", "Decoder")]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such results file"),
        ("{not json", "not JSON, or cut short"),
        ('{"records": {}}', "not a jaxperf results file"),
        (json.dumps({"schema_version": 99, "records": []}), "schema version 99"),
        (json.dumps({"schema_version": JSON_SCHEMA_VERSION, "records": [{"kind": "check", "x": 1}]}),
         "record 0 is malformed"),
    ],
)  # fmt: skip
def test_load_results_names_the_file_and_the_problem(tmp_path, content, message):
    path = tmp_path / "results.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ResultsError, match=message) as caught:
        load_results(path)
    assert str(path) in str(caught.value)


def malformed_timing(**changes):
    record = results_json([check("t.py::test_a", 0.001)], "backend cpu")
    for name, value in changes.items():
        if value is None:
            del record["records"][0]["timing"][name]
        else:
            record["records"][0]["timing"][name] = value
    return json.dumps(record)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (malformed_timing(median=float("nan")), "its timing has a median of nan, not a positive number"),
        (malformed_timing(median="1 ms"), "its timing has a median of '1 ms', not a positive number"),
        (malformed_timing(ci_low=None), "its timing has no ci_low"),
        (malformed_timing(ci_high=float("inf")), "its timing has ci_high inf, not a finite number"),
        (malformed_timing(samples="many"), "its timing has samples 'many', not a list"),
        (malformed_timing(items_per_call=0), "its timing has items_per_call 0, not a positive count"),
    ],
)
def test_a_timing_that_is_no_measurement_names_the_file_the_record_and_the_field(tmp_path, content, message):
    path = tmp_path / "results.json"
    path.write_text(content)
    with pytest.raises(ResultsError, match=message) as caught:
        load_results(path)
    assert f"{path}: record 0 (t.py::test_a Decoder)" in str(caught.value)


GOOD_CHANGE = {"kind": "transposes", "description": "transpose f32[8]: 0 → 1", "baseline": 0, "current": 1,
               "bytes": 64}  # fmt: skip
GOOD_OP = {"op": "f", "description": "loop fusion (add) f32[8]", "baseline_seconds": 0.0,
           "current_seconds": 1e-6, "share": 1.0}  # fmt: skip


def with_fields(**fields):
    record = results_json([check("t.py::test_a", 0.001)], "backend cpu")
    record["records"][0].update(fields)
    return json.dumps(record)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"explanation": "slower"}, "its explanation is 'slower', not an object of fields"),
        ({"explanation": {"headline": 3}}, "its explanation's headline is 3, not text"),
        ({"explanation": {"seconds": "1 s"}}, "its explanation's seconds is '1 s', not a number"),
        ({"explanation": {"program_changes": {}}}, "its explanation's program_changes is {}, not a list"),
        ({"explanation": {"program_changes": [GOOD_CHANGE, {**GOOD_CHANGE, "bytes": None}]}},
         r"its explanation's program_changes\[1\] has bytes None, not int"),
        ({"explanation": {"op_times": [{**GOOD_OP, "baseline_seconds": None}]}},
         r"its explanation's op_times\[0\] has baseline_seconds None, not a number"),
        ({"explanation": {"op_times": [{**GOOD_OP, "share": "most"}]}},
         r"its explanation's op_times\[0\] has share 'most', not a fraction or null"),
        ({"trace": 5}, "its trace is 5, not a folder's path"),
    ],
)  # fmt: skip
def test_an_explanation_or_trace_the_reports_cannot_read_is_named(tmp_path, fields, message):
    path = tmp_path / "results.json"
    path.write_text(with_fields(**fields))
    with pytest.raises(ResultsError, match=message) as caught:
        load_results(path)
    assert f"{path}: record 0 (t.py::test_a Decoder)" in str(caught.value)
    good = {"explanation": {"headline": "h", "program_changes": [GOOD_CHANGE], "op_times": [GOOD_OP]}}
    path.write_text(with_fields(**good, trace="traces/t"))
    assert load_results(path).records[0].explanation == good["explanation"]


@pytest.mark.parametrize("command", ["compare", "report"])
def test_the_commands_exit_2_on_a_malformed_file_never_a_traceback(tmp_path, capsys, command):
    good = write_results(tmp_path / "a.json", [check("t::x", 1e-3)])
    bad = tmp_path / "bad.json"
    bad.write_text(malformed_timing(ci_low=None))
    arguments = [str(good), str(bad)] if command == "compare" else [str(bad), "--no-history"]
    assert cli.main([command, *arguments]) == cli.EXIT_MISUSE
    assert "bad.json: record 0 (t.py::test_a Decoder): its timing has no ci_low" in capsys.readouterr().err


def test_compare_judges_b_against_a_and_lists_one_sided_measurements(tmp_path):
    a = load_results(write_results(tmp_path / "a.json", [check("t::same", 1e-3), check("t::slow", 1e-3),
                                                         check("t::gone", 1e-3)]))  # fmt: skip
    b = load_results(write_results(tmp_path / "b.json", [check("t::same", 1e-3), check("t::slow", 2e-3),
                                                         check("t::new", 1e-3)]))  # fmt: skip
    by_test = {d.nodeid: d for d in compare_results(a, b)}
    assert by_test["t::same"].status == "pass"
    assert by_test["t::slow"].status == "regressed"
    assert "vs A" in by_test["t::slow"].verdict.reason
    assert by_test["t::gone"].status == ONLY_IN_A
    assert by_test["t::new"].status == ONLY_IN_B
    assert any_regressed(list(by_test.values()))


def test_compare_gates_deterministic_metrics_exactly(tmp_path):
    a = load_results(write_results(tmp_path / "a.json", [check("t::x", 1e-3, flops=1e6)]))
    b = load_results(write_results(tmp_path / "b.json", [check("t::x", 1e-3, flops=2e6)]))
    (difference,) = compare_results(a, b)
    assert difference.status == "regressed"
    assert "FLOPs" in difference.verdict.reason


def test_compare_command_exit_codes(tmp_path, capsys):
    same = write_results(tmp_path / "a.json", [check("t::x", 1e-3)])
    slower = write_results(tmp_path / "b.json", [check("t::x", 3e-3)])
    assert cli.main(["compare", str(same), str(same)]) == cli.EXIT_OK
    assert cli.main(["compare", str(same), str(slower)]) == cli.EXIT_REGRESSION
    assert "regressed" in capsys.readouterr().out
    assert cli.main(["compare", str(same), str(tmp_path / "missing.json")]) == cli.EXIT_MISUSE
    assert "missing.json: no such results file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        cli.main(["compare", str(same), str(same), "--threshold", "200%"])
    assert exited.value.code == cli.EXIT_MISUSE
    assert "'200%' is outside (0, 1)" in capsys.readouterr().err


# --- the report page -------------------------------------------------------------------------------


def precision(sqnr, floor):
    return {
        "audit": {"summary": "3 matmuls: 3 bf16"},
        "fidelity": {"min_sqnr_db": sqnr, "min_worst_channel_db": sqnr - 5, "floor_db": floor, "examples": 50,
                     "seconds": 1.0},
        "param_bytes": 500,
        "float32_param_bytes": 1000,
    }  # fmt: skip


def report_records():
    return [
        check("suites/t.py::test_decoder[fp32]", 1e-3, precision={**precision(50.0, 30.0), "fidelity": {}}),
        check("suites/t.py::test_decoder[bf16]", 2e-3, variant="bf16-d1", precision=precision(40.0, 30.0)),
        check("suites/t.py::test_decoder[int8]", 1.5e-3, variant="int8-d1", precision=precision(20.0, 30.0)),
        check("suites/t.py::test_decoder[d8]", 0.5e-3, variant="fp32-d8"),
        check("suites/u.py::test_sizes[1]", 1e-4, items=1),
        check("suites/u.py::test_sizes[64]", 1e-3, items=64),
        FigureRecord("suites/u.py::test_sweep", "fp32-d1", "Decoder batch 8: throughput", 5e4, "items/s",
                     model="Decoder", batch=8),
        FigureRecord("suites/u.py::test_sweep", "fp32-d1", "Decoder batch 64: throughput", 2e5, "items/s",
                     model="Decoder", batch=64),
    ]  # fmt: skip


def test_labels_drop_the_variant_and_the_batch_from_the_case():
    bf16, sized = report_records()[1], report_records()[5]
    assert page_labels.case_label(bf16) == "test_decoder Decoder"
    assert page_labels.series_label(sized) == "test_sizes Decoder"
    wide = check("t.py::test_x[d8-wide]", 1e-3, variant="fp32-d8")
    assert page_labels.case_label(wide) == "test_x[wide] Decoder"


def test_page_has_every_section_with_tables_and_the_speedups(tmp_path):
    results = load_results(write_results(tmp_path / "r.json", report_records()))
    built = page.build_page(results, None)
    titles = [s.title for s in built.sections]
    assert titles == [
        "Checks and verdicts",
        "Throughput against batch size",
        "Speed-up matrix",
        "Fidelity against float32",
        "Memory per variant",
        "Figures the tests reported",
    ]
    speedups = next(s for s in built.sections if s.title == "Speed-up matrix").tables[0]
    row = dict(
        zip(speedups.header, next(r for r in speedups.rows if r[0] == "test_decoder Decoder"), strict=True)
    )
    assert (row["fp32-d1"], row["bf16-d1"], row["int8-d1"], row["fp32-d8"]) == (
        "1.00×",
        "0.50×",
        "0.67×",
        "2.00×",
    )
    throughput = next(s for s in built.sections if s.title == "Throughput against batch size").tables[0]
    assert ("Decoder fp32-d1 (sweep)", "64", "200,000") in throughput.rows
    assert ("test_sizes Decoder fp32-d1", "1", "10,000") in throughput.rows


class _Collector(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


@pytest.mark.skipif(not plots.available(), reason="matplotlib (the 'report' extra) is not installed")
def test_html_is_self_contained_with_one_image_per_plot(tmp_path):
    results = load_results(write_results(tmp_path / "r.json", report_records()))
    built = page.build_page(results, None)
    document = page_render.to_html(built)
    parser = _Collector()
    parser.feed(document)
    images = [attrs for tag, attrs in parser.tags if tag == "img"]
    assert len(images) == sum(len(s.plots) for s in built.sections) == 4
    assert all((attrs["src"] or "").startswith("data:image/png;base64,") for attrs in images)
    assert all(attrs["alt"] for attrs in images)
    # Nothing is fetched: no script, no stylesheet link, no remote address.
    assert not [tag for tag, _ in parser.tags if tag in ("script", "link", "iframe")]
    assert "http://" not in document
    assert "https://" not in document
    assert built.problems == ()
    # The same tables in the Markdown, less the images.
    markdown = page_render.to_markdown(built)
    assert "data:image" not in markdown
    for table in page_render.all_tables(built):
        assert "| " + " | ".join(table.header) + " |" in markdown


def test_without_matplotlib_the_page_keeps_its_tables_and_says_why(tmp_path, monkeypatch):
    monkeypatch.setattr(plots, "available", lambda: False)
    results = load_results(write_results(tmp_path / "r.json", report_records()))
    built = page.build_page(results, None)
    assert all(not s.plots for s in built.sections)
    assert any("pytest-jaxperf[report]" in p for p in built.problems)
    assert "pytest-jaxperf[report]" in page_render.to_html(built)


def test_report_command_writes_html_or_markdown(tmp_path, capsys):
    results = write_results(tmp_path / "r.json", report_records())
    assert cli.main(["report", str(results), "-o", str(tmp_path / "out.md"), "--no-history"]) == cli.EXIT_OK
    assert (tmp_path / "out.md").read_text().startswith("## jaxperf report")
    assert cli.main(["report", str(results), "-o", str(tmp_path / "out.html"), "--no-history"]) == cli.EXIT_OK
    assert (tmp_path / "out.html").read_text().startswith("<!DOCTYPE html>")
    missing = tmp_path / "nowhere"
    assert cli.main(["report", str(results), "--baselines", str(missing)]) == cli.EXIT_MISUSE
    assert f"--baselines '{missing}' is not a directory" in capsys.readouterr().err


# --- the baselines' history from git --------------------------------------------------------------


def _baseline_document(median, commit, date="2026-11-01"):
    return {
        "schema_version": 1,
        "environment": {"backend": "cpu"},
        "module": "suites/t.py",
        "records": {
            "test_a::Decoder": {"median": median, "items_per_call": 64, "commit": commit, "date": date}
        },
    }


def test_history_reads_every_committed_recording_and_reports_corrupt_files(tmp_path):
    git(tmp_path, "init", "-q")
    folder = tmp_path / "baselines" / "cpu-cpu-x1-abcd1234"
    folder.mkdir(parents=True)
    target = folder / "suites.t.py-123456.json"
    for median, commit in ((1e-3, "aaaa"), (0.8e-3, "bbbb")):
        target.write_text(json.dumps(_baseline_document(median, commit)))
        git(tmp_path, "add", ".")
        git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", commit)
    (folder / "broken.json").write_text("{cut short")  # uncommitted, corrupt
    history = baseline_history(tmp_path / "baselines")
    assert history.revisions == 2
    (series,) = history.series().values()
    assert [p.commit for p in series] == ["aaaa", "bbbb"]
    assert [p.throughput for p in series] == pytest.approx([64_000, 80_000])
    assert len(history.problems) == 1
    assert "broken.json is corrupt or truncated" in history.problems[0]
    section = page_history.history_section(history, [])
    assert section.tables[0].rows[0][-1] == "+25.0%"
    assert target.read_text() == json.dumps(_baseline_document(0.8e-3, "bbbb"))  # nothing was written


def test_history_outside_git_reads_the_files_as_they_are(tmp_path):
    folder = tmp_path / "baselines" / "cpu-cpu-x1-abcd1234"
    folder.mkdir(parents=True)
    (folder / "m.json").write_text(json.dumps(_baseline_document(2e-3, "cccc")))
    history = baseline_history(tmp_path / "baselines")
    assert history.revisions == 0
    assert [p.throughput for p in history.points] == [32_000]
    assert math.isfinite(history.points[0].median)


def test_the_summary_says_when_the_whole_run_drifted() -> None:
    def judged(index: int, ratio: float, *, exactly: bool = False) -> CheckRecord:
        # Consistent with the timing tier: regressed when the interval's low end clears the limit.
        low, limit = ratio - 0.02, 0.145
        status = "regressed" if exactly or low - 1 > limit else "pass"
        verdict = {
            "status": status, "reason": "", "ratio": ratio, "ci_low": low, "limit": limit,
            "regressed_exactly": exactly,
        }  # fmt: skip
        return check(f"t.py::test_{index}", 0.001 * ratio, verdict=verdict)

    drifted = [judged(i, 1.1 + 0.015 * (i % 6)) for i in range(12)]
    assert [r.verdict["status"] for r in drifted].count("regressed") == 2  # 1.175: low 1.155, over the limit
    # One more slower than the rest, and one whose FLOPs grew while its time did not move.
    run = [*drifted, judged(12, 1.6), judged(13, 1.0, exactly=True)]
    lines = drift_lines(run)
    assert lines[0].startswith("jaxperf: the median of 14 timed checks ran 13.8% slower than its baseline")
    assert lines[1].startswith(
        "jaxperf: of the 3 slower than their limits, against that median 1 still stands out: t.py::test_12"
    )
    # Counted apart, never among those the drift may explain.
    assert lines[2].startswith("jaxperf: 1 regressed in exact figures (compiles, FLOPs, bytes, memory)")
    assert lines[2].endswith("t.py::test_13 " + run[-1].key)
    # Too few checks to tell the machine from the models: said as such.
    assert drift_lines(drifted[:7])[0].startswith("jaxperf: all 7 timed checks ran slower than their")
    # The pull-request comment says it too, under the regressions.
    assert "\n> the median of 14 timed checks ran 13.8% slower" in markdown_summary(run)


def test_the_summary_pairs_a_drift_with_the_replays_and_notes_the_gate_itself() -> None:
    def replayed(index: int, ratio: float, replay_ratio: float, **replay: object) -> CheckRecord:
        verdict = {
            "status": "pass", "reason": "", "ratio": ratio, "ci_low": ratio - 0.02, "limit": 0.3,
            "regressed_exactly": False, "decided_by": "replay", "cross_process": "pass",
            "detectable": 0.05, "threshold": 0.05,
        }  # fmt: skip
        record = check(f"t.py::test_{index}", 0.001 * ratio, verdict=verdict)
        figures = {"ratio": replay_ratio, "ci_low": replay_ratio - 0.01, "ci_high": replay_ratio + 0.01,
                   "same_program": True, "compile_ratio": 1.0, "compile_seconds_current": 0.1,
                   "compile_seconds_baseline": 0.1, **replay}  # fmt: skip
        return dataclasses.replace(record, replay=figures)

    # Every check 15 % slower across processes; their programs, replayed, as fast as the baselines'.
    run = [replayed(i, 1.15, 1.0 + 0.002 * (i % 3 - 1)) for i in range(10)]
    run.append(replayed(10, 1.15, 1.0, compile_ratio=1.6, compile_seconds_current=0.16))
    lines = drift_lines(run)
    assert lines[1].startswith("jaxperf: meanwhile the 11 replayed checks' programs ran +0.0% against their ")
    assert lines[1].endswith(
        "the programs did not change, the machine did (cross-process +15.0%); the replays decided"
    )
    notes = gate_lines(run)
    assert notes[0].startswith("jaxperf: replay noise: 11 check(s) replayed their own unchanged program")
    assert notes[1].startswith("jaxperf: warning: t.py::test_10 ")
    assert "XLA compile 1.60× the baseline program's here (0.160 s vs 0.100 s)" in notes[1]
    # A check judged across processes whose limit is far beyond its threshold says what it can see.
    blind = check("t.py::test_blind", 0.001, verdict={
        "status": "pass", "reason": "", "ratio": 1.0, "ci_low": 0.9, "limit": 1.83,
        "regressed_exactly": False, "decided_by": "cross-process", "detectable": 1.83, "threshold": 0.1,
    })  # fmt: skip
    assert gate_lines([blind])[0].startswith(
        "jaxperf: t.py::test_blind Decoder can only catch slowdowns beyond +183.0%: its baseline's recording "
        "processes spread 61% (recorded on a busy machine?)"
    )


def test_a_recording_limit_is_weighed_against_the_checks_own_gate_threshold() -> None:
    settings = PluginSettings()  # threshold 10 %, ceiling +50 %
    # Its processes spread 30 %: a limit of +90 %, beyond twice 10 % and beyond the ceiling.
    session_gated = check("t.py::test_wide", 0.001)
    line, refused = limit_line(session_gated, 0.3, 3, settings) or ("", False)
    assert line.startswith("jaxperf: t.py::test_wide::Decoder can only catch slowdowns beyond +90%")
    assert refused
    # Gated at 50 % by @jaxperf.gate(threshold=0.5): +90 % is within twice its own threshold.
    assert limit_line(dataclasses.replace(session_gated, threshold=0.5), 0.3, 3, settings) is None


def test_the_terminal_summary_fits_120_columns_and_says_a_shared_reason_once():
    reason = "recorded with cpu_model: 'AMD EPYC 7B13' there, 'Intel Xeon 8481C' here; times not compared"
    verdict = {"status": "not comparable", "reason": reason, "ratio": None, "limit": None}
    records = [
        check(f"suites/test_a_long_module_name.py::test_model[{'case' * 15}-{i}]", 1e-3, verdict=verdict)
        for i in range(37)
    ]
    lines = summary_lines(records)
    assert max(len(line) for line in lines) <= 120
    text = " ".join(" ".join(lines).split())  # the notes are wrapped at 120 columns
    assert text.count(reason) == 1
    assert "37 checks not comparable (suites/test_a_long_module_name.py::test_model[" in text
    assert "and 34 more): recorded with" in text
    assert verdict_counts(records) == "jaxperf: 0 regressed, 37 not comparable"
