"""The house holds: imports go downward only, one module owns paths and names, modules and
functions stay small. Read from the source's AST, so a new module is checked too."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "gravix"

# Lower numbers are lower layers; a module may import its own package or a lower layer.
LAYERS: dict[str, int] = {
    "errors": 0,
    "units": 1,
    "report": 1,
    "settings": 2,
    "schema": 3,
    "storage": 4,
    "ingest": 5,
    "rollup": 5,
    "query": 5,
    "ops": 6,
    "dashboard": 6,
    "tools": 7,
    "cli": 8,
    "__main__": 9,
    "__init__": 1,
}
# Functions allowed past 60 lines, each with the reason.
LONG_FUNCTIONS: dict[str, str] = {}
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def _package(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def _imports(tree: ast.AST) -> list[tuple[int, str, bool]]:
    """(line, imported gravix module, inside a function) for every import of gravix."""
    out: list[tuple[int, str, bool]] = []

    def visit(node: ast.AST, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = nested or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                out.extend((child.lineno, a.name, nested) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                if child.module == "gravix":
                    out.extend(
                        (child.lineno, f"gravix.{a.name}", nested)
                        for a in child.names
                        if (SRC / a.name).is_dir() or (SRC / f"{a.name}.py").is_file()
                    )
                else:
                    out.append((child.lineno, child.module, nested))
            visit(child, inner)

    visit(tree, False)
    return [(line, name, nested) for line, name, nested in out if name.startswith("gravix.")]


def test_every_package_has_a_layer() -> None:
    unknown = {_package(p) for p in _modules()} - set(LAYERS)
    assert not unknown, f"give these packages a layer in LAYERS: {sorted(unknown)}"


def test_imports_go_downward_only() -> None:
    wrong: list[str] = []
    for path in _modules():
        source = path.read_text()
        own = _package(path)
        for line, name, _nested in _imports(ast.parse(source)):
            target = name.split(".")[1]
            if target != own and LAYERS[target] >= LAYERS[own]:
                wrong.append(f"{path.relative_to(SRC)}:{line} imports {name}")
    assert not wrong, "imports that go sideways or up:\n" + "\n".join(wrong)


def test_no_importlib_into_gravix() -> None:
    offenders = [
        str(p.relative_to(SRC))
        for p in _modules()
        if re.search(r"importlib\.import_module\(\s*f?[\"']gravix", p.read_text())
    ]
    assert not offenders


def test_function_level_imports_are_only_heavy_libraries_or_own_package() -> None:
    """A function-level import of a gravix module is allowed only to keep start-up fast
    (in cli/, where each command loads its library on use) or inside the same package;
    never to dodge a cycle between packages below cli."""
    wrong: list[str] = []
    for path in _modules():
        own = _package(path)
        if own == "cli":
            continue
        for line, name, nested in _imports(ast.parse(path.read_text())):
            if nested and name.split(".")[1] != own:
                wrong.append(f"{path.relative_to(SRC)}:{line} imports {name} in a function")
    assert not wrong, "\n".join(wrong)


_PATH_SCHEME = re.compile(r"event_day=|hour=|part-|active-|sealed-")


def _strings(tree: ast.Module) -> list[tuple[int, str]]:
    """Every string literal and f-string piece in the code, docstrings left out."""
    docstrings: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str | bytes)
        and id(node) not in docstrings
    ]


def test_only_storage_layout_builds_paths_and_names() -> None:
    """No module but storage/layout.py spells a partition, part file or buffer file name."""
    layout = SRC / "storage" / "layout.py"
    offenders: list[str] = []
    for path in _modules():
        if path == layout:
            continue
        for number, text in _strings(ast.parse(path.read_text())):
            value = text if isinstance(text, str) else text.decode("latin-1")
            if _PATH_SCHEME.search(value):
                offenders.append(f"{path.relative_to(SRC)}:{number}: {value!r}")
    assert not offenders, "path scheme spelt outside storage.layout:\n" + "\n".join(offenders)


def test_path_scan_catches_a_formatted_partition(tmp_path: Path) -> None:
    """The scan above is not vacuous: it finds the spellings it is meant to find."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        '"""A docstring may say event_day=."""\n'
        'a = f"event_day={day}"\nb = "hour=%02d" % h\nc = f"part-{h:02d}.parquet"\n'
        "d = layout.raw_hour_dir(root, topic, hour)\n"
    )
    found = [n for n, s in _strings(ast.parse(sample.read_text())) if _PATH_SCHEME.search(s)]
    assert found == [2, 3, 4]


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_module_is_small(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{lines} lines"


def test_functions_are_short() -> None:
    """Counted from the first statement of the body (after a docstring) to the end: a typer
    command's signature declares one option per line and is not logic."""
    long: list[str] = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                body = node.body
                if len(body) > 1 and isinstance(body[0], ast.Expr):
                    body = body[1:]  # the docstring
                length = node.end_lineno - body[0].lineno + 1
                name = f"{path.relative_to(SRC)}:{node.name}"
                if length > MAX_FUNCTION_LINES and name not in LONG_FUNCTIONS:
                    long.append(f"{name} ({length} lines)")
    assert not long, "functions over 60 lines:\n" + "\n".join(long)
