"""The README and the docs pages hold: every code block in them runs as shown (or says why it does not),
their marker and option tables are the plugin's, and the site builds with ``mkdocs build --strict``.

The roles of the blocks, and the comments that change them, are described in ``markdown_blocks.py`` and
on the docs' development page. One project holds every titled file of every page; its test files run in
one pytest process, then the shell blocks run in it in the order of the pages, then the snippets.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any, cast

import pytest

from pytest_jaxperf import plugin
from pytest_jaxperf.markers import MARKERS

from .markdown_blocks import (
    ROOT,
    Block,
    Plan,
    anchors,
    blocks_of,
    documents,
    navigation,
    plan,
    table,
    unmatched_lines,
)

README = ROOT / "README.md"
README_LIMIT = 12_000
#: What every docs run adds to pytest: no cache folder, a short sampling budget (the figures shown are
#: checked figures aside, so a shorter budget changes none of what is checked).
PYTEST_ADDOPTS = "-p no:cacheprovider -p no:randomly -o jaxperf_budget=0.3"
MARKER_HEADER = "| marker | arguments | effect |"
OPTION_HEADER = "| option | ini | meaning |"


def all_blocks() -> list[Block]:
    return [block for document in documents() for block in blocks_of(document)]


@pytest.fixture(scope="module")
def docs_plan() -> Plan:
    return plan(all_blocks())


def write_project(directory: Path, files: list[Block]) -> None:
    """Every titled block as its file; one title, one content."""
    written: dict[str, Block] = {}
    for block in files:
        assert block.title is not None
        earlier = written.get(block.title)
        if earlier is not None:
            assert earlier.text == block.text, f"{block.where}: {block.title} differs from {earlier.where}"
            continue
        written[block.title] = block
        (directory / block.title).parent.mkdir(parents=True, exist_ok=True)
        (directory / block.title).write_text(block.text, encoding="utf-8")


def child_environment(**extra: str) -> dict[str, str]:
    """The environment of a docs command: the outer run's options and plugins left out, hypothesis
    derandomized (its ``ci`` profile, as on CI), this interpreter's scripts first on the PATH."""
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS")}
    scripts = str(Path(sys.executable).parent)
    environment.update(
        PATH=f"{scripts}{os.pathsep}{environment.get('PATH', '')}",
        PYTEST_ADDOPTS=PYTEST_ADDOPTS,
        CI="1",
        NO_MKDOCS_2_WARNING="1",
        **extra,
    )
    return environment


# --- the blocks --------------------------------------------------------------------------------------


def test_every_block_runs_or_says_why(docs_plan: Plan) -> None:
    assert not docs_plan.problems, "\n".join(docs_plan.problems)
    counted = (
        len(docs_plan.files)
        + len(docs_plan.snippets)
        + len(docs_plan.shells)
        + len(docs_plan.outputs)
        + len(docs_plan.not_run)
    )
    assert counted == len(all_blocks())
    # The README's tour, at least, is run: a plan that ran nothing would pass everything.
    assert any(block.title == "test_tour.py" for block in docs_plan.files)
    assert docs_plan.shells
    assert docs_plan.snippets


def test_files_compile_and_titles_are_one_file_each(docs_plan: Plan, tmp_path: Path) -> None:
    for block in docs_plan.files + docs_plan.snippets:
        compile(block.text, block.where, "exec")
    write_project(tmp_path, docs_plan.files)


def _junit_cases(report: Path) -> dict[str, list[ElementTree.Element]]:
    """The test cases of a JUnit XML report, by the file (module) they belong to."""
    cases: dict[str, list[ElementTree.Element]] = {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        module = (case.get("classname") or case.get("name") or "").split(".")[0]
        cases.setdefault(f"{module}.py", []).append(case)
    return cases


def _failure_text(case: ElementTree.Element) -> str | None:
    for child in case:
        if child.tag in ("failure", "error"):
            return f"{child.get('message', '')}\n{child.text or ''}"
    return None


def test_test_files_pass_or_fail_as_shown(
    docs_plan: Plan, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_project(pytester.path, docs_plan.files)
    tests = [block for block in docs_plan.files if block.is_test_file]
    for key, value in child_environment().items():
        monkeypatch.setenv(key, value)
    result = pytester.runpytest_subprocess(
        *dict.fromkeys(str(block.title) for block in tests),
        "--junitxml=docs-junit.xml",
        "--continue-on-collection-errors",
        timeout=600,
    )
    cases = _junit_cases(pytester.path / "docs-junit.xml")
    problems = []
    for block in tests:
        found = cases.get(str(block.title), [])
        failures = [text for text in map(_failure_text, found) if text is not None]
        ran = [case for case in found if not any(child.tag == "skipped" for child in case)]
        if not found:
            problems.append(f"{block.where}: {block.title} ran no test")
        elif block.expects_failure:
            if not failures:
                problems.append(f"{block.where}: {block.title} was to fail and passed")
            else:
                missing = unmatched_lines(docs_plan.outputs[block].text, "\n".join(failures))
                if missing:
                    problems.append(
                        f"{block.where}: {block.title} failed, but without {missing[0]!r}:\n{failures[0]}"
                    )
        elif failures:
            problems.append(f"{block.where}: {block.title} failed:\n{failures[0]}")
        elif not ran:
            problems.append(f"{block.where}: every test of {block.title} was skipped")
    assert not problems, "\n\n".join(problems) + "\n\n" + result.stdout.str()[-3000:]


def test_shell_blocks_run_as_shown(docs_plan: Plan, tmp_path: Path) -> None:
    # One project for the blocks of every page, in order, as a reader following the pages runs them:
    # a later page's commands read what an earlier one's wrote (the baselines a page records).
    write_project(tmp_path, docs_plan.files)
    for block in docs_plan.shells:
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-e", "-o", "pipefail", "-c", block.text],
            cwd=tmp_path,
            env=child_environment(),
            capture_output=True,
            text=True,
            timeout=600,
        )
        output = done.stdout + done.stderr
        assert done.returncode == block.exit_status, (
            f"{block.where}: exit {done.returncode}, not {block.exit_status}:\n{block.text}\n{output[-4000:]}"
        )
        shown = docs_plan.outputs.get(block)
        if shown is not None:
            missing = unmatched_lines(shown.text, output)
            assert not missing, f"{block.where}: no line like {missing[0]!r} in its output:\n{output[-4000:]}"
    # What the pages say these commands leave behind.
    assert (tmp_path / "report.html").stat().st_size > 10_000
    assert (tmp_path / "report.md").read_text(encoding="utf-8").startswith("## jaxperf report")
    assert list((tmp_path / "baselines").glob("*/test_measuring.py-*.json"))


SNIPPET_RUNNER = """
import json, runpy, sys, traceback
outcomes = []
for path in sys.argv[1:]:
    try:
        runpy.run_path(path, run_name="__main__")
        outcomes.append(None)
    except BaseException:
        outcomes.append(traceback.format_exc())
print("DOCS-SNIPPETS " + json.dumps(outcomes))
"""


def test_snippets_run(docs_plan: Plan, tmp_path: Path) -> None:
    # Each in a fresh namespace, all in one process (a jax import each would cost seconds), beside the
    # pages' files (a snippet imports the examples' model).
    write_project(tmp_path, docs_plan.files)
    paths = []
    for number, block in enumerate(docs_plan.snippets):
        path = tmp_path / f"docs_snippet_{number}.py"
        path.write_text(block.text, encoding="utf-8")
        paths.append(str(path))
    done = subprocess.run(
        [sys.executable, "-c", SNIPPET_RUNNER, *paths],
        cwd=tmp_path,
        env=child_environment(PYTHONPATH=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=600,
    )
    last = [line for line in done.stdout.splitlines() if line.startswith("DOCS-SNIPPETS ")]
    assert last, done.stdout[-3000:] + done.stderr[-3000:]
    outcomes = json.loads(last[-1].removeprefix("DOCS-SNIPPETS "))
    failed = [
        f"{block.where}:\n{error}" for block, error in zip(docs_plan.snippets, outcomes, strict=True) if error
    ]
    assert not failed, "\n\n".join(failed)


# --- the README --------------------------------------------------------------------------------------


def test_readme_is_a_landing_page() -> None:
    size = len(README.read_bytes())
    assert size <= README_LIMIT, f"README.md is {size} bytes; the landing page keeps to {README_LIMIT}"
    lines = README.read_text(encoding="utf-8").splitlines()
    # .ci/run greps the first line ending in this comment and runs it as CI's test command.
    ci = [line for line in lines if "# the plugin's own tests" in line]
    assert ci, "README.md has no line with the comment '# the plugin's own tests' (.ci/run runs it)"
    assert (
        ci[0].split("#")[0].strip()
        == 'pip install -e ".[test]" && pytest && pytest suites/ --gate-benchmarks'
    )
    assert any(line.startswith('pip install -e ".[qwix]" && pytest --jaxperf suites/') for line in lines)


def test_links_of_the_readme_resolve() -> None:
    text = README.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    local = [link for link in links if not re.match(r"[a-z]+:", link)]
    assert local
    for link in local:
        path, _, anchor = link.partition("#")
        target = (README.parent / path) if path else README
        assert target.exists(), f"README.md links to {link}: no such file"
        if anchor:
            assert anchor in anchors(target), f"README.md links to {link}: {path} has no such heading"
    for page in ("markers", "fixture", "precision", "memory", "devices", "measuring", "replay", "cli"):
        assert f"docs/{page}.md" in local, f"README.md has no link to docs/{page}.md"


# --- the tables against the plugin ---------------------------------------------------------------------


def _signature(help_line: str) -> dict[str, str | None]:
    """``name(a=1, *b): …`` as ``{"a": "1", "*b": None}``."""
    inside = help_line[help_line.index("(") + 1 : help_line.index("):")]
    arguments: dict[str, str | None] = {}
    depth, start = 0, 0
    for position, character in enumerate(inside + ","):
        depth += (character in "([{") - (character in ")]}")
        if character == "," and depth == 0:
            name, _, default = inside[start:position].strip().partition("=")
            arguments[name.strip()] = default.strip() or None
            start = position + 1
    return arguments


def _code_outside_parentheses(cell: str) -> list[str]:
    """The code spans of a table cell, but those inside the prose's parentheses (examples of values)."""
    found, depth = [], 0
    for index, segment in enumerate(cell.split("`")):
        if index % 2:
            if depth == 0:
                found.append(segment)
        else:
            depth += segment.count("(") - segment.count(")")
    return found


def _same_value(written: str, actual: str) -> bool:
    try:
        return bool(ast.literal_eval(written) == ast.literal_eval(actual))
    except (ValueError, SyntaxError):
        return written == actual


def _tables(header: str) -> list[tuple[Path, list[list[str]]]]:
    found = [(document, table(document, header)) for document in documents()]
    return [(document, rows) for document, rows in found if rows]


def test_marker_tables_are_the_plugins_markers() -> None:
    tables = _tables(MARKER_HEADER)
    assert {document.name for document, _ in tables} >= {"README.md", "markers.md"}
    for document, rows in tables:
        assert [f"jaxperf_{row[0].strip('`')}" for row in rows] == list(MARKERS), document
        for row in rows:
            signature = _signature(MARKERS[f"jaxperf_{row[0].strip('`')}"])
            written = {
                name.strip(): value.strip() or None
                for name, _, value in (code.partition("=") for code in _code_outside_parentheses(row[1]))
            }
            assert set(written) == set(signature), f"{document.name}: {row[0]} lists {sorted(written)}"
            for name, value in written.items():
                default = signature[name]
                if value and default is not None:
                    assert _same_value(value, default), (
                        f"{document.name}: {row[0]} {name}={value}, not {default}"
                    )


class _Options:
    """Stands in for pytest's parser: records the plugin's options and ini values."""

    def __init__(self) -> None:
        self.options: dict[str, dict[str, Any]] = {}
        self.inis: dict[str, Any] = {}

    def getgroup(self, *args: Any, **kwargs: Any) -> _Options:
        return self

    def addoption(self, *names: str, **kwargs: Any) -> None:
        for name in names:
            self.options[name] = kwargs

    def addini(self, name: str, help: str, type: str | None = None, default: Any = None) -> None:
        self.inis[name] = default


def plugin_options() -> _Options:
    recorded = _Options()
    plugin.pytest_addoption(cast("pytest.Parser", recorded))
    return recorded


#: The options of explaining regressions and profiling, and their ini twins: the page that documents them,
#: docs/explaining.md, comes with its own change, which puts it in the site's navigation and these options
#: in the tables. Until the page is in the navigation the tables may leave them out; from then on they list
#: them like every other.
EXPLAINING_PAGE = "explaining.md"
EXPLAINING = {"--jaxperf-explain", "--jaxperf-profile", "--jaxperf-profile-on"}
EXPLAINING_INIS = {"jaxperf_explain", "jaxperf_profile", "jaxperf_profile_on"}


def test_option_tables_are_the_plugins_options() -> None:
    real = plugin_options()
    listed = EXPLAINING_PAGE in {document.name for document in navigation()}
    awaited = set() if listed else EXPLAINING
    awaited_inis = set() if listed else EXPLAINING_INIS
    # The options awaiting their page are the plugin's: the exception cannot outlive them unnoticed.
    assert awaited <= set(real.options)
    assert awaited_inis <= set(real.inis)
    tables = _tables(OPTION_HEADER)
    assert {document.name for document, _ in tables} >= {"README.md", "measuring.md"}
    for document, rows in tables:
        options = {row[0].strip("`").split("=")[0]: row for row in rows if row[0]}
        inis = {row[1].strip("`").split(" ")[0]: row for row in rows if row[1]}
        assert set(options) <= set(real.options), f"{document.name}: options the plugin does not have"
        assert set(inis) <= set(real.inis), f"{document.name}: ini values the plugin does not have"
        missing = set(real.options) - set(options) - awaited
        assert not missing, f"{document.name}: the plugin's options {sorted(missing)} are missing"
        missing = set(real.inis) - set(inis) - awaited_inis
        assert not missing, f"{document.name}: the plugin's ini values {sorted(missing)} are missing"
        for name, row in options.items():
            dest = real.options[name]["dest"]
            twin = row[1].strip("`").split(" ")[0]
            assert twin == (dest if dest in real.inis else ""), f"{document.name}: {name}'s ini is {dest}"
        for name, row in inis.items():
            default = re.search(r"default (?:`([^`]+)`|(\d[\d.]*))", row[2])
            if default and real.inis[name] not in (None, ""):
                written, actual = (default.group(1) or default.group(2)).rstrip("/"), str(real.inis[name])
                assert _same_value(written, actual), f"{document.name}: {name} defaults to {actual}"


def test_the_ci_recipes_name_real_options() -> None:
    real = plugin_options()
    for recipe in (ROOT / "docs" / "ci").glob("*.yml"):
        for option in re.findall(r"--jaxperf[\w-]*", recipe.read_text(encoding="utf-8")):
            assert option in real.options, f"{recipe.name} names {option}, which the plugin does not have"


# --- the site ------------------------------------------------------------------------------------------


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    if importlib.util.find_spec("mkdocs") is None:
        pytest.fail("mkdocs is not installed: install the test extra, pip install -e '.[test]'")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=child_environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "WARNING" not in output, output
    assert (tmp_path / "site" / "index.html").exists()
    # The CI recipes are included in their page from the files that are tested.
    assert "jaxperf-report.html" in (tmp_path / "site" / "ci" / "index.html").read_text(encoding="utf-8")
