"""The package's rooms keep their rules (ARCHITECTURE.md): imports point down, no circles, the core and
the rooms beside it know nothing of pytest, and loading the plugin imports no jax."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "pytest_jaxperf"

#: Each room's floor, lowest first: a module imports from its own floor or below, never above.
FLOORS: dict[str, int] = {
    # foundations: import only each other
    "specs": 0, "settings": 0, "options": 0, "units": 0, "errors": 0, "records": 0, "record_fields": 0,
    "intervals": 0, "noise": 0, "processes": 0, "environment": 0, "markers": 0, "plots": 0, "writable": 0,
    "signals": 0,
    # JAX programs
    "core": 1,
    # transformations, judgements, the pure verdicts and the store
    "optimize": 2, "checks": 2, "verdicts": 2, "baseline": 2,
    # one case's models and checks, failures explained, the gate, the stored program, the recording, results
    # written, read and reported
    "case_models": 3, "checking": 3, "failures": 3, "gating": 3, "replaying": 3, "expectations": 3,
    "explain": 3, "recording": 3, "results": 3, "rows": 3, "report": 3, "comparison": 3, "gate_notes": 3,
    # the faces: the pytest fixture and session, the command line, the page, jaxperf ab
    "fixture": 4, "outcomes": 4, "session": 4, "cli": 4, "ab": 4,
    "page": 4, "page_model": 4, "page_labels": 4, "page_sections": 4, "page_history": 4, "page_explain": 4,
    "page_render": 4,
    # the hooks and the public package
    "plugin": 5, "__init__": 5,
}  # fmt: skip
#: Rooms that never import pytest: what they raise, the fixture turns into the test's outcome.
PYTEST_FREE = (
    "core", "optimize", "checks", "checking", "failures", "gating", "expectations", "recording", "verdicts",
    "explain", "replaying", "case_models",
)  # fmt: skip
#: The most lines a module of the package may have: past it, a module carries more than one concern.
MODULE_LINE_LIMIT = 450
#: Modules held tighter: the fixture is the test's thin face, its methods a few lines that call the rooms.
LINE_LIMITS = {"pytest_jaxperf.fixture": 300}


def _room(module: str) -> str:
    """``core`` for ``pytest_jaxperf.core.wrap``, ``gating`` for ``pytest_jaxperf.gating``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``name`` imports, anywhere in it (type-only and lazy imports too)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                found.add(candidate if candidate in known else target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {module for module in found if module in known and module != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def test_every_room_has_a_floor() -> None:
    rooms = {_room(name) for name in _modules()}
    assert rooms <= set(FLOORS), f"rooms without a floor in ARCHITECTURE.md and FLOORS: {rooms - set(FLOORS)}"


def test_imports_point_down() -> None:
    upward = [
        f"{name} (floor {FLOORS[_room(name)]}) imports {target} (floor {FLOORS[_room(target)]})"
        for name, targets in _graph().items()
        for target in sorted(targets)
        if FLOORS[_room(target)] > FLOORS[_room(name)]
    ]
    assert not upward, "\n".join(upward)


def test_optimize_and_checks_stay_apart() -> None:
    # Transformations and judgements are built on the core, never on each other.
    crossing = [
        f"{name} imports {target}"
        for name, targets in _graph().items()
        for target in targets
        if {_room(name), _room(target)} == {"optimize", "checks"}
    ]
    assert not crossing, "\n".join(crossing)


def test_no_import_circles() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    circles: list[str] = []

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                circles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not circles, "\n".join(circles)


@pytest.mark.parametrize("room", PYTEST_FREE)
def test_rooms_below_the_fixture_never_import_pytest(room: str) -> None:
    offenders = []
    for name, path in _modules().items():
        if _room(name) != room:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and not node.level
                else []
            )
            offenders += [f"{name}: {n}" for n in names if n.split(".")[0] in ("pytest", "_pytest")]
    assert not offenders, "\n".join(offenders)


def test_every_module_stays_within_its_line_limit() -> None:
    over = [
        f"{name}: {lines} lines, over {limit}"
        for name, path in sorted(_modules().items())
        for lines, limit in [(len(path.read_text().splitlines()), LINE_LIMITS.get(name, MODULE_LINE_LIMIT))]
        if lines > limit
    ]
    assert not over, "split by concern (ARCHITECTURE.md):\n" + "\n".join(over)


def test_loading_the_plugin_imports_neither_jax_nor_numpy() -> None:
    # Users configure jax in their conftest, after pytest has loaded every plugin.
    code = "import sys, pytest_jaxperf.plugin; print(sorted({'jax', 'flax', 'numpy'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
