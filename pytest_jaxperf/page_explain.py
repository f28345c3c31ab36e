"""The sections of ``jaxperf report``'s page that say why a check's time changed and where to look: each
explained regression (its program changes and the ops that added time) and each check's profiler trace,
linked from the page's folder."""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .page_model import Entry, Link, Section, Table
from .records import counts_bytes
from .units import format_bytes
from .verdicts import DECIDED_BY_REPLAY, REGRESSED

if TYPE_CHECKING:
    from .page_model import Cell
    from .records import CheckRecord, ExplanationRecord
    from .results import Results


#: How many of a regression's program changes and ops the page lists (the results JSON has them all).
SHOWN_CHANGES = 5
#: How to open a check's trace, said once per section that links one.
OPEN_TRACE = (
    "Open a trace in Perfetto (ui.perfetto.dev → Open trace file → its .trace.json.gz file), or in XProf "
    "(xprof --logdir FOLDER, or TensorBoard's profile plugin: tensorboard --logdir FOLDER; FOLDER the trace "
    "folder)."
)


def _measurement(check: CheckRecord) -> str:
    return f"{check.nodeid} {check.key or check.model}"


def explanations_section(results: Results, traces: Traces) -> Section | None:
    """Why each explained check regressed, an entry per check; None where no check was explained."""
    explained = [c for c in results.checks if c.explanation]
    if not explained:
        return None
    unexplained = [
        c for c in results.checks if c.verdict and c.verdict["status"] == REGRESSED and not c.explanation
    ]
    notes = (
        (f"{len(unexplained)} regressed check(s) carry no explanation in these results: "
         + ", ".join(_measurement(c) for c in unexplained),)
        if unexplained
        else ()
    )  # fmt: skip
    return Section(
        "Why it regressed",
        "Per explained check: the largest differences between the baseline's optimized program and the "
        "current one, and the ops that added most time per call, from a profiler trace of each program. "
        + (OPEN_TRACE if any(c.trace for c in explained) else ""),
        notes=notes,
        entries=tuple(_explanation_entry(c, c.explanation, traces) for c in explained if c.explanation),
    )


def _explanation_entry(check: CheckRecord, explanation: ExplanationRecord, traces: Traces) -> Entry:
    lines = [explanation["headline"]] if explanation.get("headline") else []
    by = check.verdict.get("decided_by") if check.verdict else None
    # The ratio of the tier that decided: the verdict's own is the cross-process one.
    replayed = check.replay.get("ratio") if check.replay and by == DECIDED_BY_REPLAY else None
    ratio = replayed if replayed is not None else (check.verdict.get("ratio") if check.verdict else None)
    if check.verdict and ratio is not None:
        lines.append(
            f"Time {ratio - 1:+.1%} against the baseline: {check.verdict['status']}"
            + (f" (decided by {by})" if by else "")
            + "."
        )
    tables: list[Table] = []
    notes: list[str] = []
    # In the explanation's order, which its headline follows: matmuls first, then by bytes touched.
    changes = list(explanation.get("program_changes", []))
    if changes:
        shown = changes[:SHOWN_CHANGES]
        change_rows = tuple(
            (c["description"], c["kind"], _amount(c["kind"], c["baseline"]), _amount(c["kind"], c["current"]),
             format_bytes(c["bytes"]))
            for c in shown
        )  # fmt: skip
        caption = (
            f"the first {len(shown)} of {len(changes)} program changes (matmuls first, then by bytes touched)"
            if len(changes) > len(shown)
            else "program changes"
        )
        header: tuple[str, ...] = ("change", "kind", "baseline", "current", "bytes touched")
        tables.append(Table(header, change_rows, caption=caption, free_text=("change",)))
    elif "program_changes" in explanation:
        notes.append("The two optimized programs do not differ in any op, fusion or size counted.")
    if explanation.get("no_program"):
        notes.append(f"Programs not compared: {explanation['no_program']}")
    timed = explanation.get("op_times", [])
    added = sorted(
        (o for o in timed if o["current_seconds"] > o["baseline_seconds"]),
        key=lambda o: o["baseline_seconds"] - o["current_seconds"],
    )[:SHOWN_CHANGES]
    if added:
        op_rows = tuple(
            (o["op"], o["description"], _microseconds(o["baseline_seconds"]),
             _microseconds(o["current_seconds"]), _microseconds(o["current_seconds"] - o["baseline_seconds"]),
             "-" if o["share"] is None else f"{o['share']:.0%}")
            for o in added
        )  # fmt: skip
        header = ("op", "what it computes", "baseline µs", "current µs", "added µs", "share of added")
        caption = "the ops that added most time per call"
        tables.append(Table(header, op_rows, caption=caption, free_text=("what it computes",)))
    elif timed:
        notes.append("No op of the current program takes longer than in the baseline's.")
    if explanation.get("no_time_breakdown"):
        notes.append(f"No per-op time: {explanation['no_time_breakdown']}")
    if "seconds" in explanation:
        notes.append(f"Explaining took {explanation['seconds']:.1f} s.")
    return Entry(_measurement(check), tuple(lines), traces.links(check), tuple(tables), tuple(notes))


def _amount(kind: str, value: int) -> str:
    return format_bytes(value) if counts_bytes(kind) else f"{value:,}"


def _microseconds(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f}"


@dataclass(frozen=True)
class Traces:
    """Where checks' trace folders are, and links to them from the page's folder."""

    results_folder: Path
    page_folder: Path | None
    """Where the page is written; None where not known (written to standard output): links are then
    absolute, since a relative one would be relative to a folder the page may not be in."""

    def folder(self, trace: str) -> Path:
        """The trace folder as this process finds it: a relative one from the current folder (where
        ``jaxperf report`` runs, as pytest did), else beside the results file."""
        path = Path(trace)
        if path.is_absolute():
            return path
        here, beside = Path.cwd() / path, self.results_folder / path
        return beside if beside.exists() and not here.exists() else here

    def href(self, target: Path) -> str:
        """The address of ``target`` on the page: relative to the page's folder where it is known."""
        if self.page_folder is None:
            return target.absolute().as_uri()
        try:
            relative = os.path.relpath(target.absolute(), self.page_folder.absolute())
        except ValueError:  # another drive (Windows): no relative path
            return target.absolute().as_uri()
        return urllib.parse.quote(Path(relative).as_posix())

    def files(self, trace: str) -> tuple[Path | None, Path | None]:
        """The Perfetto (``*.trace.json.gz``) and XProf (``*.xplane.pb``) files of a trace, where found."""
        folder = self.folder(trace)
        if folder.is_file():
            return (folder if folder.name.endswith("trace.json.gz") else None), (
                folder if folder.name.endswith(".xplane.pb") else None
            )
        if not folder.is_dir():
            return None, None
        # jax writes perfetto_trace.json.gz for Perfetto beside <host>.trace.json.gz; both open there.
        perfetto = sorted(folder.rglob("perfetto_trace.json.gz")) or sorted(folder.rglob("*.trace.json.gz"))
        xplane = sorted(folder.rglob("*.xplane.pb"))
        return (perfetto[-1] if perfetto else None), (xplane[-1] if xplane else None)

    def links(self, check: CheckRecord) -> tuple[Link, ...]:
        """Links to a check's trace folder and to its Perfetto and XProf files; none without a trace."""
        if not check.trace:
            return ()
        perfetto, xplane = self.files(check.trace)
        links = [Link(f"trace folder {check.trace}", self.href(self.folder(check.trace)))]
        links += [Link(f"Perfetto: {perfetto.name}", self.href(perfetto))] if perfetto else []
        links += [Link(f"XProf: {xplane.name}", self.href(xplane))] if xplane else []
        return tuple(links)


def traces_section(results: Results, traces: Traces) -> Section | None:
    """Each traced check's trace folder and files, linked; None where no check was traced."""
    traced = [c for c in results.checks if c.trace]
    if not traced:
        return None
    rows: list[tuple[Cell, ...]] = []
    missing = []
    for check in traced:
        if not check.trace:
            continue
        folder = traces.folder(check.trace)
        perfetto, xplane = traces.files(check.trace)
        if not folder.exists():
            missing.append(check.trace)
        rows.append(
            (
                _measurement(check),
                Link(check.trace, traces.href(folder)),
                Link(perfetto.name, traces.href(perfetto)) if perfetto else "-",
                Link(xplane.name, traces.href(xplane)) if xplane else "-",
            )
        )
    notes = (
        (f"{len(missing)} trace folder(s) not found from here (moved, or on another machine): linked as "
         "recorded: " + ", ".join(missing),)
        if missing
        else ()
    )  # fmt: skip
    return Section(
        "Profiler traces",
        "Each traced check's profiler trace. " + OPEN_TRACE,
        tables=(Table(("check", "trace folder", "Perfetto", "XProf"), tuple(rows), identifiers=("check",)),),
        notes=notes,
    )
