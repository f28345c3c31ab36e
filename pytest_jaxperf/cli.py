"""The ``jaxperf`` command: ``report``, ``compare`` and ``ab``.

Exit codes: 0 fine, 1 a regression (``compare``, ``ab``) or a test the working tree breaks (``ab``),
2 misuse (a bad argument, a file that cannot be read, a revision that does not exist), 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .writable import why_unwritable

if TYPE_CHECKING:
    from collections.abc import Sequence

EXIT_OK = 0
EXIT_REGRESSION = 1
EXIT_MISUSE = 2
EXIT_INTERRUPTED = 130


def fraction(text: str) -> float:
    """``0.05`` or ``5%``: a threshold strictly between 0 and 1."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction (0.05) or a percentage (5%)") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is outside (0, 1): give e.g. 0.05 or 5%")
    return value


def rounds(text: str) -> int:
    """A number of rounds, at least 2 (an interval needs two)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of rounds") from None
    if value < 2:
        raise argparse.ArgumentTypeError(
            f"{value} round(s): at least 2 are needed for an interval (5 recommended)"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxperf",
        description="Reports and A/B gates over pytest-jaxperf results.",
        epilog="Exit codes: 0 fine, 1 regression, 2 misuse, 130 interrupted.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{report,compare,ab}")

    report = commands.add_parser(
        "report",
        help="an HTML page (or Markdown) of one run's results and the baselines' history",
        description="Render the results of `pytest --jaxperf --jaxperf-json=results.json` as one "
        "self-contained HTML page (plots embedded; needs the 'report' extra for plots) or as Markdown, "
        "with the history of every benchmark across the baselines committed in git.",
    )
    report.add_argument("results", type=Path, help="a results file written by --jaxperf-json")
    report.add_argument("-o", "--output", type=Path, help="where to write (default: standard output)")
    report.add_argument(
        "--format", choices=("html", "md"), help="html or md (default: from the output's suffix, else html)"
    )
    report.add_argument(
        "--baselines",
        type=Path,
        default=Path("baselines"),
        help="the committed baselines (default: baselines)",
    )
    report.add_argument("--no-history", action="store_true", help="leave the baselines' history out")

    compare = commands.add_parser(
        "compare",
        help="the differences between two results files, with verdicts",
        description="Judge every measurement of B against the same measurement of A, as the gate judges a "
        "run against its baseline: deterministic metrics exactly, time by the interval of the ratio of "
        "medians. Exit 1 when one regressed.",
    )
    compare.add_argument("a", type=Path, help="results file A (the reference)")
    compare.add_argument("b", type=Path, help="results file B (judged against A)")
    compare.add_argument(
        "--threshold", type=fraction, default=0.10, help="smallest slowdown that fails (default 10%%)"
    )

    ab = commands.add_parser(
        "ab",
        help="base revision against the working tree, in alternating fresh processes",
        usage="jaxperf ab --base REV [--rounds N] [--threshold T] [--json FILE] -- [pytest args]",
        description="Check out --base in a temporary git worktree and run the selected tests there (A) and "
        "in the working tree as it is (B), in alternating fresh processes (A B, B A, …). Per measurement: "
        "the ratio of medians B/A with a 90% interval from the rounds, and a verdict. Exit 1 on a "
        "regression or on a test that fails in the working tree only.",
    )
    ab.add_argument(
        "--base", required=True, help="the base revision: a branch, tag or commit (e.g. origin/main)"
    )
    ab.add_argument("--rounds", type=rounds, default=5, help="processes per side (default 5)")
    ab.add_argument(
        "--threshold", type=fraction, default=0.05, help="smallest change that counts (default 5%%)"
    )
    ab.add_argument("--json", type=Path, help="also write the result as JSON to this file")
    ab.add_argument("pytest_args", nargs=argparse.REMAINDER, help="after --: the tests and pytest options")
    return parser


def _fail(command: str, message: str) -> int:
    print(f"jaxperf {command}: error: {message}", file=sys.stderr)
    return EXIT_MISUSE


def _write(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    from .writable import write_atomically

    write_atomically(output, text)
    print(f"jaxperf report: written to {output}", file=sys.stderr)


def _report(args: argparse.Namespace) -> int:
    from .page import build_page
    from .page_render import to_html, to_markdown
    from .results import ResultsError, baseline_history, load_results

    if args.output is not None:
        why = why_unwritable(args.output)
        if why:
            return _fail("report", f"-o {args.output} cannot be written: {why}")
    try:
        results = load_results(args.results)
    except ResultsError as error:
        return _fail("report", str(error))
    if not args.no_history and not args.baselines.is_dir():
        return _fail(
            "report", f"--baselines {str(args.baselines)!r} is not a directory (or pass --no-history)"
        )
    history = None if args.no_history else baseline_history(args.baselines)
    # Trace links are written relative to the page, so that the page and its traces move together.
    page = build_page(results, history, page_folder=args.output.resolve().parent if args.output else None)
    form = args.format or (
        "md" if args.output and args.output.suffix.lower() in (".md", ".markdown") else "html"
    )
    _write(to_markdown(page) if form == "md" else to_html(page), args.output)
    for problem in page.problems:
        print(f"jaxperf report: note: {problem}", file=sys.stderr)
    return EXIT_OK


def _compare(args: argparse.Namespace) -> int:
    from .comparison import any_regressed, compare_results, difference_rows
    from .report import text_table
    from .results import ResultsError, load_results

    try:
        a, b = load_results(args.a), load_results(args.b)
    except ResultsError as error:
        return _fail("compare", str(error))
    if a.environment != b.environment:
        print(f"jaxperf compare: note: the runs come from different environments:\n  A: {a.environment}\n"
              f"  B: {b.environment}", file=sys.stderr)  # fmt: skip
    differences = compare_results(a, b, threshold=args.threshold)
    if not differences:
        print("jaxperf compare: neither file has a timed measurement (run pytest with --jaxperf)")
        return EXIT_OK
    for line in text_table(difference_rows(differences)):
        print(line)
    for d in differences:
        if d.status not in ("pass",) and d.verdict.reason:
            print(f"{d.nodeid} {d.key}: {d.status}: {d.verdict.reason}")
    return EXIT_REGRESSION if any_regressed(differences) else EXIT_OK


def _ab(args: argparse.Namespace) -> int:
    import json

    from .ab import AbError, report_rows, run_ab
    from .report import text_table

    if args.json is not None:
        why = why_unwritable(args.json)
        if why:
            return _fail("ab", f"--json {args.json} cannot be written: {why}")
    pytest_args = list(args.pytest_args)
    if pytest_args[:1] == ["--"]:
        pytest_args = pytest_args[1:]

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        report = run_ab(
            args.base, pytest_args, rounds=args.rounds, threshold=args.threshold, progress=progress
        )
    except AbError as error:
        return _fail("ab", str(error))
    except KeyboardInterrupt:
        print("jaxperf ab: interrupted; the base worktree was removed", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"jaxperf ab: A = {args.base} ({report.base_commit[:12]}), B = the working tree"
          + (f" with {len(report.dirty)} uncommitted change(s)" if report.dirty else ""))  # fmt: skip
    for line in text_table(report_rows(report)):
        print(line)
    for row in report.rows:
        if row.status != "pass" and row.reason:
            name = f"{row.nodeid} {row.key}" if row.key else row.nodeid
            print(f"{name}: {row.status}: {row.reason}")
    tests = max(report.tests, 1)
    print(
        f"jaxperf ab: {report.rounds} rounds × 2 sides in {report.seconds:.0f} s "
        f"({report.seconds / tests:.1f} s per test, {len(report.runs)} processes)"
    )
    if args.json is not None:
        from .writable import write_atomically

        write_atomically(args.json, json.dumps(report.to_dict(), indent=1) + "\n")
    return EXIT_REGRESSION if report.failing else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """The console script's entry point; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {"report": _report, "compare": _compare, "ab": _ab}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
