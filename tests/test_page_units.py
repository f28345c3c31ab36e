"""`jaxperf report`'s page as data: what each section shows and says (why it regressed, profiler traces,
throughput only where batch sizes vary, the history's reasons), its links, and plots whose text stays
inside them. Plain unit tests; the page in a browser is test_report_render.py."""

from __future__ import annotations

import gzip
import html
import json
import os
from pathlib import Path
from typing import Any

import pytest

from pytest_jaxperf import page, page_history, page_model, page_render, plots
from pytest_jaxperf.records import CheckRecord, FigureRecord
from pytest_jaxperf.results import History, HistoryPoint, load_results

from .test_cli_units import check, precision, write_results

# --- records a user's run would write ---------------------------------------------------------------

#: An audit summary as long as a real transformer block's: the column that made the fidelity table scroll.
LONG_AUDIT = (
    "24 matmuls: 22 bfloat16×bfloat16, 2 float32×float32; 2 apart, not judged (2 input-independent): "
    "rope.sin_table, rope.cos_table; compiled: 22 bf16, 2 f32"
)


def verdict(status: str, ratio: float, decided_by: str = "replay") -> dict[str, Any]:
    reason = f"{decided_by}: {ratio - 1:+.1%}, limit +10%"
    return {"status": status, "reason": reason, "ratio": ratio, "ci_low": ratio - 0.04,
            "ci_high": ratio + 0.04, "limit": 0.1, "deterministic": [], "regressed_exactly": False,
            "decided_by": decided_by}  # fmt: skip


def program_change(kind: str, description: str, baseline: int, current: int, size: int) -> dict[str, Any]:
    return {"kind": kind, "description": description, "baseline": baseline, "current": current, "bytes": size}


def op_time(
    op: str, description: str, baseline: float, current: float, share: float | None
) -> dict[str, Any]:
    return {"op": op, "description": description, "baseline_seconds": baseline, "current_seconds": current,
            "share": share}  # fmt: skip


#: Seven program changes, not in order: the page shows the five that touch most bytes, largest first.
PROGRAM_CHANGES = [  # in the explanation's order: matmuls first, then by bytes touched
    program_change("dots", "dot f32[64,256]×f32[256,784]: 1 → 1 (operands transposed)", 1, 1, 1_024),
    program_change("temporary bytes", "temporary bytes: 1.0 MiB → 2.0 MiB", 2**20, 2**21, 2**20),
    program_change("transposes", "transpose f32[256,784]: 0 → 1", 0, 1, 802_816),
    program_change("converts", "convert bf16[64,784] → f32[64,784]: 0 → 1", 0, 1, 200_704),
    program_change("copies", "copy f32[64,256]: 0 → 2", 0, 2, 131_072),
    program_change("fusions", "loop fusion (dot+add+tanh) split in two", 3, 4, 65_536),
    program_change("kernels", "kernels: 7 → 9", 7, 9, 4_096),
]

EXPLANATION = {
    "headline": "The current program transposes the head's weight on every call (784.0 KiB more per call)",
    "program_changes": PROGRAM_CHANGES,
    "counts": {"baseline": {"kernels": 7, "transposes": 0}, "current": {"kernels": 9, "transposes": 1}},
    "op_times": [
        op_time("fusion.12", "loop fusion (dot+add+tanh), f32[64,256]", 12e-6, 25e-6, 0.62),
        op_time("dot.4", "dot f32[64,32]×f32[32,128]", 10e-6, 9e-6, None),
        op_time("transpose.3", "transpose f32[256,784]", 0.0, 6e-6, 0.29),
        op_time("convert.7", "convert bf16[64,784] → f32[64,784]", 0.0, 2e-6, 0.09),
    ],
    "seconds": 3.2,
}

#: What an explanation says where neither the programs nor the op times could be compared.
BLIND_EXPLANATION = {
    "headline": "No program to compare: only the time is known to have changed",
    "no_program": "the baseline holds no stored program (recorded before programs were stored)",
    "no_time_breakdown": "the profiler could not start: another trace was running",
}


def trace_folder(root: Path, name: str) -> Path:
    """A profiler trace laid out as jax.profiler writes it: plugins/profile/<run>/<host>.{trace.json.gz,
    xplane.pb}."""
    run = root / name / "plugins" / "profile" / "2026_11_29_10_00_00"
    run.mkdir(parents=True)
    (run / "host.trace.json.gz").write_bytes(gzip.compress(b'{"traceEvents": []}'))
    (run / "host.xplane.pb").write_bytes(b"\x00")
    return root / name


def user_records(traces: Path | None = None) -> list[CheckRecord | FigureRecord]:
    """A run as a user sees it: long test ids, a real audit's length, every check at one batch size, one
    regression explained with its trace, one explained blind, one regression unexplained."""
    module = "suites/test_precision.py::test_unet_block_precision"
    folder = trace_folder(traces, "test_unet_block_precision-bf16-d8") if traces else None
    long_precision = {**precision(41.2, 30.0), "audit": {"summary": LONG_AUDIT}}
    return [
        check(f"{module}[fp32-d1]", 1.0e-3, key="UNetBlock", precision={**long_precision, "fidelity": {}},
              verdict=verdict("pass", 1.01)),
        check(f"{module}[bf16-d8]", 1.3e-3, key="UNetBlock", variant="bf16-d8", precision=long_precision,
              verdict=verdict("regressed", 1.31), replay={"ratio": 1.29, "ci_low": 1.26, "ci_high": 1.32},
              explanation=EXPLANATION, trace=str(folder) if folder else None),
        check(f"{module}[int8-dynamic-d8]", 1.2e-3, key="UNetBlock", variant="int8-dynamic-d8",
              precision={**long_precision, "fidelity": {**long_precision["fidelity"], "min_sqnr_db": 24.0}},
              verdict=verdict("regressed", 1.22, "cross-process"), explanation=BLIND_EXPLANATION),
        check(f"{module}[int8-d8]", 1.1e-3, key="UNetBlock", variant="int8-d8", precision=long_precision,
              verdict=verdict("regressed", 1.15)),
        check("suites/test_lm.py::test_lm_step[fp32-d1-decode]", 2e-4, key="DecoderLM",
              verdict=verdict("pass", 0.98)),
    ]  # fmt: skip


def write_baselines(folder: Path) -> Path:
    """A baselines folder as a user's CI copies it, outside any git checkout: each benchmark recorded once,
    at no known commit, under names as long as the suites' own."""
    environment = folder / "cpu-cpu-x8-51cd450c"
    environment.mkdir(parents=True)
    for module, tests in (
        ("suites/test_lm.py", "test_lm_step"),
        ("suites/test_precision.py", "test_unet_block"),
    ):
        records = {
            f"{tests}[{variant}-{devices}-{phase}]::DecoderLM": {
                "median": 1e-3, "items_per_call": 64, "commit": "unknown", "date": "2026-11-29"
            }
            for variant in ("fp32", "bf16", "int8", "int8-dynamic")
            for devices in ("d1", "d8")
            for phase in ("prefill", "decode")
        }  # fmt: skip
        document = {
            "schema_version": 1,
            "environment": {"backend": "cpu"},
            "module": module,
            "records": records,
        }
        (environment / f"{module.replace('/', '.')}-abcdef.json").write_text(json.dumps(document))
    return folder


def built(tmp_path: Path, records: list[Any], **options: Any) -> page_model.Page:
    return page.build_page(load_results(write_results(tmp_path / "results.json", records)), None, **options)


def section(built_page: page_model.Page, title: str) -> page_model.Section:
    return next(s for s in built_page.sections if s.title == title)


# --- throughput against batch size ------------------------------------------------------------------


def test_no_throughput_plot_nor_table_when_every_check_ran_one_batch_size(tmp_path: Path) -> None:
    titles = [s.title for s in built(tmp_path, user_records()).sections]
    assert "Throughput against batch size" not in titles
    assert titles[:2] == ["Checks and verdicts", "Why it regressed"]


def test_throughput_shows_the_series_with_two_batch_sizes_and_says_which_are_left_out(tmp_path: Path) -> None:
    records = [
        check("suites/u.py::test_sizes[1]", 1e-4, items=1),
        check("suites/u.py::test_sizes[64]", 1e-3, items=64),
        check("suites/u.py::test_other", 1e-3, items=64, key="Encoder"),
        FigureRecord("suites/u.py::test_sweep", "fp32-d1", "b8", 5e4, "items/s", model="Decoder", batch=8),
    ]
    throughput = section(built(tmp_path, records), "Throughput against batch size")
    assert {row[0] for row in throughput.tables[0].rows} == {"test_sizes Decoder fp32-d1"}
    assert throughput.notes == (
        "2 series timed at one batch size only are not drawn: their items/s are in the checks' table "
        "(a sweep's in the figures').",
    )
    assert len(throughput.plots) == (1 if plots.available() else 0)


# --- why it regressed -------------------------------------------------------------------------------


def test_why_it_regressed_lists_the_headline_the_five_largest_changes_and_the_ops_that_added_time(
    tmp_path: Path,
) -> None:
    why = section(built(tmp_path, user_records(tmp_path / "traces")), "Why it regressed")
    explained, blind = why.entries
    assert explained.title == "suites/test_precision.py::test_unet_block_precision[bf16-d8] UNetBlock"
    assert explained.lines == (
        EXPLANATION["headline"],
        "Time +29.0% against the baseline: regressed (decided by replay).",
    )
    changes, ops = explained.tables
    assert changes.caption == "the first 5 of 7 program changes (matmuls first, then by bytes touched)"
    assert [row[0] for row in changes.rows] == [
        "dot f32[64,256]×f32[256,784]: 1 → 1 (operands transposed)",
        "temporary bytes: 1.0 MiB → 2.0 MiB",
        "transpose f32[256,784]: 0 → 1",
        "convert bf16[64,784] → f32[64,784]: 0 → 1",
        "copy f32[64,256]: 0 → 2",
    ]
    assert changes.rows[1][1:] == ("temporary bytes", "1.0 MiB", "2.0 MiB", "1.0 MiB")
    assert changes.rows[2][1:] == ("transposes", "0", "1", "784.0 KiB")
    # Only the ops that added time, the most first, with their share of what was added; dot.4 got faster.
    assert [(row[0], row[4], row[5]) for row in ops.rows] == [
        ("fusion.12", "13.0", "62%"),
        ("transpose.3", "6.0", "29%"),
        ("convert.7", "2.0", "9%"),
    ]
    assert explained.notes == ("Explaining took 3.2 s.",)
    assert blind.tables == ()
    assert blind.notes == (
        "Programs not compared: the baseline holds no stored program (recorded before programs were stored)",
        "No per-op time: the profiler could not start: another trace was running",
    )
    assert why.notes == (
        "1 regressed check(s) carry no explanation in these results: "
        "suites/test_precision.py::test_unet_block_precision[int8-d8] UNetBlock",
    )


def test_an_explanation_of_the_same_program_says_so_and_a_run_without_one_has_no_section(
    tmp_path: Path,
) -> None:
    faster = op_time("dot.1", "dot", 2e-6, 1e-6, None)
    same = check("t.py::test_a", 1e-3, verdict=verdict("regressed", 1.2),
                 explanation={"program_changes": [], "op_times": [faster]})  # fmt: skip
    (entry,) = section(built(tmp_path, [same]), "Why it regressed").entries
    assert entry.notes == (
        "The two optimized programs do not differ in any op, fusion or size counted.",
        "No op of the current program takes longer than in the baseline's.",
    )
    titles = [s.title for s in built(tmp_path, [check("t.py::test_a", 1e-3)]).sections]
    assert "Why it regressed" not in titles
    assert "Profiler traces" not in titles


# --- profiler traces --------------------------------------------------------------------------------


def test_trace_links_are_relative_to_the_page_and_reach_the_files(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    built_page = built(tmp_path, user_records(tmp_path / "traces"), page_folder=site)
    (row,) = section(built_page, "Profiler traces").tables[0].rows
    folder, perfetto, xplane = row[1:]
    assert isinstance(folder, page_model.Link)
    assert isinstance(perfetto, page_model.Link)
    assert isinstance(xplane, page_model.Link)
    assert folder.href == "../traces/test_unet_block_precision-bf16-d8"
    assert perfetto.text == "host.trace.json.gz"
    assert (site / perfetto.href).resolve() == next((tmp_path / "traces").rglob("*.trace.json.gz")).resolve()
    assert (site / xplane.href).resolve() == next((tmp_path / "traces").rglob("*.xplane.pb")).resolve()
    # The regressed check's explanation links the same trace.
    (explained, _) = section(built_page, "Why it regressed").entries
    assert [link.href for link in explained.links] == [folder.href, perfetto.href, xplane.href]
    # How to open it, said where it is linked.
    assert "ui.perfetto.dev" in section(built_page, "Profiler traces").intro
    assert "xprof --logdir" in section(built_page, "Why it regressed").intro


def test_without_the_pages_folder_a_trace_link_is_absolute(tmp_path: Path) -> None:
    (row,) = section(built(tmp_path, user_records(tmp_path / "traces")), "Profiler traces").tables[0].rows
    assert isinstance(row[1], page_model.Link)
    assert row[1].href == (tmp_path / "traces" / "test_unet_block_precision-bf16-d8").as_uri()


def test_a_relative_trace_is_found_beside_the_results_and_a_missing_one_is_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trace_folder(tmp_path / "run", "test_a")
    records = [check("t.py::test_a", 1e-3, trace="test_a"), check("t.py::test_b", 1e-3, trace="gone/test_b")]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    results = load_results(write_results(tmp_path / "run" / "results.json", records))
    traces = section(page.build_page(results, None, page_folder=tmp_path / "run"), "Profiler traces")
    found, gone = traces.tables[0].rows
    assert isinstance(found[2], page_model.Link)
    assert found[2].href == "test_a/plugins/profile/2026_11_29_10_00_00/host.trace.json.gz"
    assert gone[2:] == ("-", "-")
    assert traces.notes == (
        "1 trace folder(s) not found from here (moved, or on another machine): linked as recorded: "
        "gone/test_b",
    )


def test_the_html_and_markdown_carry_the_explanations_and_the_links(tmp_path: Path) -> None:
    built_page = built(tmp_path, user_records(tmp_path / "traces"), page_folder=tmp_path)
    document = page_render.to_html(built_page)
    assert '<a href="traces/test_unet_block_precision-bf16-d8">' in document
    assert f'<p class="headline">{html.escape(EXPLANATION["headline"])}</p>' in document
    assert "https://" not in document  # the Perfetto address is said, not linked: nothing is fetched
    markdown = page_render.to_markdown(built_page)
    assert "#### suites/test_precision.py::test_unet_block_precision[bf16-d8] UNetBlock" in markdown
    assert f"**{EXPLANATION['headline']}**\n\nTime +29.0% against the baseline" in markdown
    assert "<" not in markdown  # GitHub would take <words> for HTML and hide them
    assert "- [trace folder " in markdown
    assert "(traces/test_unet_block_precision-bf16-d8)" in markdown
    assert "| host.trace.json.gz |" not in markdown  # a link in a table stays a link
    assert "[host.trace.json.gz](traces/" in markdown
    for table in page_render.all_tables(built_page):
        assert "| " + " | ".join(table.header) + " |" in markdown
    assert any(
        t.caption == "the first 5 of 7 program changes (matmuls first, then by bytes touched)"
        for t in page_render.all_tables(built_page)
    )


def test_the_fidelity_table_is_one_per_module_its_audit_free_to_wrap(tmp_path: Path) -> None:
    (fidelity,) = section(built(tmp_path, user_records()), "Fidelity against float32").tables
    assert fidelity.caption == "suites/test_precision.py"
    assert fidelity.rows[0][0] == "test_unet_block_precision[fp32-d1]"
    assert fidelity.free_text == ("matmuls",)
    assert f'<td class="text">{html.escape(LONG_AUDIT)}</td>' in page_render.to_html(
        built(tmp_path, user_records())
    )


# --- the baselines' history -------------------------------------------------------------------------


def point(key: str, commit: str, median: float, date: str = "2026-11-01") -> HistoryPoint:
    return HistoryPoint("cpu-cpu-x8-51cd450c", "suites/test_lm.py", key, date, commit, median, 64)


def test_a_history_outside_git_says_why_it_has_one_recording_and_no_commit() -> None:
    history = History((point("test_a::LM", "unknown", 1e-3), point("test_b::LM", "", 2e-3)), 0, ())
    section = page_history.history_section(history, [])
    assert section.intro.startswith(
        "The baselines as their files are now, and no earlier recording: no git revision of the baselines "
        "folder was found (it is outside a git checkout"
    )
    assert "each benchmark has one recording, so there is no change to draw yet" in section.intro
    (table,) = section.tables
    assert table.caption == "suites/test_lm.py on cpu-cpu-x8-51cd450c"
    assert table.header == ("benchmark", "recorded", "items/s")
    assert table.rows == (("test_a::LM", "2026-11-01 no commit", "64,000"),
                          ("test_b::LM", "2026-11-01 no commit", "32,000"))  # fmt: skip
    assert section.notes == (
        "2 of 2 recordings have no commit ('no commit'): they were recorded outside a git checkout, or "
        "where git could not run, so which commit they measured is not known.",
    )
    assert "0 git revision" not in section.intro


def test_a_history_in_git_counts_its_revisions_and_draws_what_was_recorded_again() -> None:
    history = History(
        (point("test_a::LM", "aaaa1111bbbb", 1e-3), point("test_a::LM", "cccc2222dddd", 0.8e-3, "2026-11-02"),
         point("test_b::LM", "aaaa1111bbbb", 2e-3)),
        2, (),
    )  # fmt: skip
    section = page_history.history_section(history, [])
    assert section.intro.startswith(
        "Every baseline recorded for each benchmark, read from 2 git revisions of"
    )
    assert section.intro.endswith("a plot per module where a benchmark was recorded more than once.")
    (table,) = section.tables
    assert table.rows[0] == ("test_a::LM", "2", "2026-11-01 aaaa1111", "2026-11-02 cccc2222", "64,000",
                             "80,000", "+25.0%")  # fmt: skip
    assert table.rows[1][-1] == "-"
    assert section.notes == ()
    assert len(section.plots) == (1 if plots.available() else 0)
    one = page_history.history_section(History((point("test_a::LM", "aaaa1111bbbb", 1e-3),), 1, ()), [])
    assert "read from 1 git revision of" in one.intro


# --- plots whose text stays inside them -------------------------------------------------------------


def _drawn_figures(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every figure the plots module saves, kept for inspection after it is drawn."""
    figures: list[Any] = []
    save = plots._png

    def keep(figure: Any) -> bytes:
        figures.append(figure)
        return save(figure)

    monkeypatch.setattr(plots, "_png", keep)
    return figures


def _renderer(figure: Any) -> Any:
    """``figure`` laid out and drawn again, as it was saved; the renderer that measured it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return canvas.get_renderer()


def _outside(figure: Any) -> list[str]:
    """The texts of ``figure`` that reach beyond its edges (cut off in the PNG)."""
    from matplotlib.text import Text

    renderer = _renderer(figure)
    bounds = figure.bbox
    return [
        text.get_text()
        for text in figure.findobj(Text)
        if text.get_visible() and text.get_text().strip()
        for box in [text.get_window_extent(renderer)]
        if box.x0 < bounds.x0 - 1
        or box.y0 < bounds.y0 - 1
        or box.x1 > bounds.x1 + 1
        or box.y1 > bounds.y1 + 1
    ]


@pytest.mark.skipif(not plots.available(), reason="matplotlib (the 'report' extra) is not installed")
@pytest.mark.parametrize("rows", [1, 2, 12])
def test_the_speedup_matrix_keeps_its_colour_bar_label_inside_the_figure(
    rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    figures = _drawn_figures(monkeypatch)
    columns = ["fp32-d1", "bf16-d1", "int8-d1", "int8-dynamic-d1", "fp32-d8"]
    plots.speedup_matrix(
        [f"test_{i} Decoder" for i in range(rows)], columns, [[1.0, 0.5, 0.67, 0.83, 2.0]] * rows
    )
    (figure,) = figures
    assert _outside(figure) == []
    labels = [t.get_text() for t in figure.findobj(lambda a: hasattr(a, "get_text"))]
    assert "× throughput against the reference (log scale)" in labels


@pytest.mark.skipif(not plots.available(), reason="matplotlib (the 'report' extra) is not installed")
def test_the_sqnr_bars_labels_stay_inside_the_axes_clear_of_the_legend(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    figures = _drawn_figures(monkeypatch)
    plots.sqnr_against_floor(
        ["a bf16-d1", "b int8-d1", "c int8-dynamic-d1"], [40.0, 20.0, 25.0], [30.0, 30.0, 20.0]
    )
    (figure,) = figures
    (axes,) = figure.axes
    renderer = _renderer(figure)
    inside = axes.get_window_extent(renderer)
    labels = [t for t in axes.texts if t.get_text().endswith(" dB") or t.get_text() == "exact"]
    assert len(labels) == 3
    for label in labels:
        box = label.get_window_extent(renderer)
        assert box.x1 <= inside.x1 + 1, f"{label.get_text()!r} runs past the axes, under the legend"
    assert _outside(figure) == []


def test_no_machine_path_leaks_into_a_link_where_the_page_folder_is_known(tmp_path: Path) -> None:
    built_page = built(tmp_path, user_records(tmp_path / "traces"), page_folder=tmp_path)
    links = [link for s in built_page.sections for e in s.entries for link in e.links]
    assert links
    assert all(not os.path.isabs(link.href) and not link.href.startswith("file:") for link in links)
    assert json.dumps([link.href for link in links]).count(str(tmp_path)) == 0
