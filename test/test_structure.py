"""The package's shape, checked: no import circle, imports only downward between the rooms, no function over 60
lines, no test file importing another (shared helpers live in ``test/fixtures/``)."""
import ast
from pathlib import Path

import pytest

from fixtures.common import REPO_ROOT

PACKAGE = REPO_ROOT / "video_prediction_tools"
TESTS = REPO_ROOT / "test"
MAX_FUNCTION_LINES = 60

#: the rooms each room may import (besides itself): entry points on top, utils at the bottom; models and the
#: runscript generator beside the data chain
ALLOWED_IMPORTS = {
    "utils": set(),
    "data_extraction": {"utils"},
    "data_preprocess": {"utils", "data_extraction"},
    "models": {"utils"},
    "datasets": {"utils", "data_preprocess", "data_extraction"},
    "training": {"utils", "datasets", "data_preprocess", "models"},
    "postprocess": {"utils", "training", "datasets", "data_preprocess", "data_extraction", "models"},
    "runscript_generator": {"utils", "data_extraction", "data_preprocess", "datasets", "models", "training",
                            "postprocess"},
    "quick_start": {"utils", "models", "runscript_generator", "datasets", "data_preprocess", "data_extraction",
                    "postprocess"},
    "main_scripts": {"utils", "data_extraction", "data_preprocess", "datasets", "models", "training",
                     "postprocess", "runscript_generator", "quick_start"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_modules(path: Path, known: set[str]) -> set[str]:
    """Package modules that ``path`` imports anywhere in its body (relative imports resolved)."""
    name = _module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1] + [node.module or ""]).rstrip(".") \
                if node.level else (node.module or "")
            targets |= {base, *(f"{base}.{alias.name}" for alias in node.names)}
        elif isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names}
    return {target for target in targets if target in known and target != name}


@pytest.fixture(scope="module")
def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    known = {_module_name(path) for path in paths}
    return {_module_name(path): _imported_modules(path, known) for path in paths}


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_no_import_circle(import_graph):
    state, circles = {}, []

    def visit(module, path):
        state[module] = "open"
        for target in sorted(import_graph.get(module, ())):
            if state.get(target) == "open":
                circles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(import_graph):
        if module not in state:
            visit(module, [module])
    assert not circles


def test_rooms_import_only_downward(import_graph):
    upward = [f"{module} imports {target}" for module, targets in import_graph.items() for target in targets
              if _room(module) in ALLOWED_IMPORTS and _room(target) != _room(module)
              and _room(target) not in ALLOWED_IMPORTS[_room(module)] and _room(target) != "video_prediction_tools"]
    assert not upward


def test_every_room_is_placed():
    rooms = {path.name for path in PACKAGE.iterdir() if path.is_dir() and (path / "__init__.py").exists()}
    rooms |= {path.stem for path in PACKAGE.glob("*.py") if path.stem != "__init__"}
    assert rooms <= set(ALLOWED_IMPORTS), sorted(rooms - set(ALLOWED_IMPORTS))


def test_no_function_over_sixty_lines():
    long = [f"{path.relative_to(REPO_ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for path in sorted(PACKAGE.rglob("*.py")) for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long


def test_no_test_file_imports_another():
    test_modules = {path.stem for path in TESTS.glob("test_*.py")}
    found = []
    for path in sorted(TESTS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            found += [f"{path.name} imports {name}" for name in names if name.split(".")[0] in test_modules]
    assert not found
