"""The fenced code blocks of the README and the docs pages, and what the docs tests do with each.

A block's role comes from its language, its title (```` ```python title="test_x.py" ````: a file the
reader saves) and the HTML comment on the line before it, if any:

- ``<!-- not run by the docs tests: REASON -->``: not run, for the reason given;
- ``<!-- docs test: fails -->`` before a test file: its tests fail, with the output block that follows;
- ``<!-- docs test: exits N -->`` before a shell block: it exits with status N.

Everything else runs (see ``tests/test_docs.py``): titled Python files are written into one project and
the test files among them run there; untitled Python blocks are snippets, run beside them; shell blocks run
with bash; a ``text`` block right after a test file or a shell block is checked against its output.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).parent.parent
NOT_RUN = "not run by the docs tests:"
FAILS = "docs test: fails"
EXITS = re.compile(r"docs test: exits (\d+)")

_FENCE = re.compile(r"^(?P<fence>`{3,})(?P<language>[\w+-]*)(?P<info>.*)$")
_TITLE = re.compile(r'title="(?P<title>[^"]+)"')
_COMMENT = re.compile(r"^<!--\s*(?P<text>.*?)\s*-->$")
_LANGUAGES = {"python": "python", "py": "python", "sh": "sh", "bash": "sh", "shell": "sh", "text": "text"}


@dataclass(frozen=True)
class Block:
    """One fenced code block of a Markdown file."""

    document: Path
    line: int
    """The line of its opening fence, counted from 1."""
    language: str
    title: str | None
    text: str
    directive: str | None
    """The HTML comment on the line before the fence, without its ``<!--`` and ``-->``."""

    @property
    def where(self) -> str:
        return f"{self.document.relative_to(ROOT)}:{self.line}"

    @property
    def kind(self) -> str:
        """``python``, ``sh``, ``text``, or the language as written for any other."""
        return _LANGUAGES.get(self.language, self.language)

    @property
    def not_run_reason(self) -> str | None:
        if self.directive is not None and self.directive.startswith(NOT_RUN):
            return self.directive[len(NOT_RUN) :].strip()
        return None

    @property
    def expects_failure(self) -> bool:
        return self.directive == FAILS

    @property
    def exit_status(self) -> int:
        match = EXITS.fullmatch(self.directive or "")
        return int(match.group(1)) if match else 0

    @property
    def is_test_file(self) -> bool:
        return self.kind == "python" and re.search(r"^\s*(async\s+)?def test_", self.text, re.M) is not None


def blocks_of(document: Path) -> list[Block]:
    """Every fenced block of ``document``, in order."""
    lines = document.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        fence = opening.group("fence")
        end = index + 1
        while end < len(lines) and lines[end].rstrip() != fence:
            end += 1
        before = next((line.strip() for line in reversed(lines[:index]) if line.strip()), "")
        comment = _COMMENT.match(before)
        title = _TITLE.search(opening.group("info"))
        found.append(
            Block(
                document=document,
                line=index + 1,
                language=opening.group("language").lower(),
                title=title.group("title") if title else None,
                text="\n".join(lines[index + 1 : end]) + "\n",
                directive=comment.group("text") if comment else None,
            )
        )
        index = end + 1
    return found


def navigation() -> list[Path]:
    """The pages of the site, in the order of its navigation."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    docs = ROOT / config.get("docs_dir", "docs")
    return [docs / page for page in _nav_pages(config.get("nav", []))]


def documents() -> list[Path]:
    """The README, then the pages of the site in the order of its navigation, then any other page."""
    ordered = [ROOT / "README.md", *navigation()]
    others = sorted(path for path in (ROOT / "docs").rglob("*.md") if path not in ordered)
    return [*ordered, *others]


def _nav_pages(nav: object) -> Iterable[str]:
    if isinstance(nav, str):
        if nav.endswith(".md"):
            yield nav
    elif isinstance(nav, list):
        for entry in nav:
            yield from _nav_pages(entry)
    elif isinstance(nav, dict):
        for value in nav.values():
            yield from _nav_pages(value)


@dataclass(frozen=True)
class Plan:
    """What the docs tests do with every block, and the blocks that fit no role."""

    files: list[Block]
    """Titled blocks: written into the project (the test files among them run there)."""
    snippets: list[Block]
    shells: list[Block]
    outputs: dict[Block, Block]
    """An output block, by the test file or shell block it shows the output of."""
    not_run: list[Block]
    problems: list[str]


def plan(blocks: Sequence[Block]) -> Plan:
    files: list[Block] = []
    snippets: list[Block] = []
    shells: list[Block] = []
    outputs: dict[Block, Block] = {}
    not_run: list[Block] = []
    problems: list[str] = []
    previous: Block | None = None
    for block in blocks:
        if previous is not None and previous.document != block.document:
            previous = None
        reason = block.not_run_reason
        if reason is not None:
            if len(reason) < 10:
                problems.append(f"{block.where}: say why it is not run, in words: {block.directive!r}")
            not_run.append(block)
        elif block.directive is not None and not (block.expects_failure or EXITS.fullmatch(block.directive)):
            problems.append(f"{block.where}: unknown directive {block.directive!r}")
        elif block.kind == "python" and block.title is not None:
            files.append(block)
        elif block.kind == "python" and block.is_test_file:
            problems.append(f'{block.where}: a test file needs a title naming its file (title="test_x.py")')
        elif block.kind == "python":
            snippets.append(block)
        elif block.kind == "sh":
            shells.append(block)
        elif block.kind == "text" and previous is not None and _shows_output(previous):
            if previous in outputs:
                problems.append(f"{block.where}: a second output block for {previous.where}")
            outputs[previous] = block
        elif block.kind == "text":
            problems.append(f"{block.where}: an output block must follow a test file or a shell block")
        else:
            problems.append(f"{block.where}: a {block.language or 'plain'} block that is not run says why")
        if block.expects_failure and not block.is_test_file:
            problems.append(f"{block.where}: '{FAILS}' stands before a block that is no test file")
        if block.exit_status and block.kind != "sh":
            problems.append(f"{block.where}: 'exits N' stands before a block that is no shell block")
        previous = block
    for block in files:
        if block.expects_failure and block not in outputs:
            problems.append(f"{block.where}: a failing test file is followed by the output it fails with")
    return Plan(files, snippets, shells, outputs, not_run, problems)


def _shows_output(block: Block) -> bool:
    return block.not_run_reason is None and (block.kind == "sh" or block.is_test_file)


_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def line_pattern(expected: str) -> re.Pattern[str]:
    """An expected output line as a pattern: spaces collapsed, any number for a number, ``…`` anything."""
    parts: list[str] = []
    text = " ".join(expected.split())
    position = 0
    for match in re.finditer(rf"{_NUMBER.pattern}|…", text):
        parts.append(re.escape(text[position : match.start()]))
        parts.append(".*" if match.group() == "…" else _NUMBER.pattern)
        position = match.end()
    parts.append(re.escape(text[position:]))
    return re.compile("".join(parts))


def unmatched_lines(expected: str, actual: str) -> list[str]:
    """The expected lines (from the first that fails on) not found in ``actual`` in their order."""
    lines = [" ".join(line.split()) for line in actual.splitlines()]
    position = 0
    wanted = [line for line in expected.splitlines() if line.strip() and line.strip() != "…"]
    for index, line in enumerate(wanted):
        pattern = line_pattern(line)
        found = next((i for i in range(position, len(lines)) if pattern.search(lines[i])), None)
        if found is None:
            return wanted[index:]
        position = found + 1
    return []


def slug(heading: str) -> str:
    """The anchor Python-Markdown's table of contents gives a heading (its default slugify)."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(document: Path) -> set[str]:
    """The anchors of a Markdown file's headings (outside code blocks)."""
    found: set[str] = set()
    fenced = False
    for line in document.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (heading := re.match(r"^#{1,6}\s+(.*)$", line)):
            found.add(slug(heading.group(1)))
    return found


def table(document: Path, header: str) -> list[list[str]]:
    """The rows (cells stripped) of the Markdown table whose header row starts with ``header``."""
    lines = document.read_text(encoding="utf-8").splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(header)), None)
    if start is None:
        return []
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows
