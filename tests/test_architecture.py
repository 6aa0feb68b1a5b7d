"""The shape of the source tree, read as syntax (nothing here imports the code it checks).

Rules checked, each per file so every finding is its own failure:
- No import of another package's private module (``rock_sdk`` -> ``rock_core._x``,
  ``rock_agent`` -> ``rock_core._x``, any -> ``rock_sdk._x``, ``from rock_core import _x``): a
  package uses another only through its public surface.
- No import cycle among the modules of a package. Module-level imports only: imports inside
  functions and under ``if TYPE_CHECKING:`` run late or never, so they close no cycle.
- No file under ``src`` is over `MAX_LINES` lines.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
MAX_LINES = 420


# ---------------------------------------------------------------------------- reading the tree


def module_name(root: Path, path: Path) -> str:
    """The dotted module name of `path` below `root` (a package's ``__init__`` is the package)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files(root: Path) -> list[Path]:
    """Every Python file below `root`, sorted."""
    return sorted(root.rglob("*.py"))


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Imports that run when the module is imported (not in functions, not type-only)."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node):
                yield from _module_level(node.body)
            yield from _module_level(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody):
                yield from _module_level(block)
            for handler in node.handlers:
                yield from _module_level(handler.body)
        elif isinstance(node, ast.With):
            yield from _module_level(node.body)


def imported_modules(
    root: Path, path: Path, *, module_level: bool
) -> Iterator[tuple[int, str, list[str]]]:
    """(line, module, names) for each import of `path`, relative imports made absolute."""
    tree = ast.parse(path.read_text(), str(path))
    nodes = _module_level(tree.body) if module_level else ast.walk(tree)
    own = module_name(root, path)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield node.lineno, base, [alias.name for alias in node.names]


# ---------------------------------------------------------------------------- the checks


def private_imports(root: Path, path: Path) -> list[str]:
    """Imports in `path` of a private module of another top-level package."""
    own_top = module_name(root, path).split(".")[0]
    found = []
    for line, module, names in imported_modules(root, path, module_level=False):
        parts = module.split(".")
        if parts[0] == own_top:
            continue
        if any(part.startswith("_") for part in parts[1:]):
            found.append(f"line {line}: {module}")
        else:  # `from pkg import _private`
            found += [f"line {line}: {module}.{n}" for n in names if n.startswith("_")]
    return found


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module-level import edges among the modules of `package` (a top-level package)."""
    modules = {
        module_name(root, path): path for path in source_files(root / package) if path.is_file()
    }
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for _, module, names in imported_modules(root, path, module_level=True):
            submodules = {f"{module}.{n}" for n in names} & modules.keys()
            targets = submodules or ({module} & modules.keys())
            graph[name] |= targets - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def line_count(path: Path) -> int:
    """Lines of `path`."""
    return len(path.read_text().splitlines())


# ---------------------------------------------------------------------------- over src

FILES = [path.relative_to(SRC).as_posix() for path in source_files(SRC)]
PACKAGES = sorted({name.split("/")[0] for name in FILES})
_CYCLES = {package: cycles(import_graph(SRC, package)) for package in PACKAGES}


@pytest.mark.parametrize("file", FILES)  # one case per file: each finding its own failure
def test_no_private_import_of_another_package(file: str) -> None:
    found = private_imports(SRC, SRC / file)
    assert not found, f"{file} imports private modules of another package: {'; '.join(found)}"


@pytest.mark.parametrize("file", FILES)  # one case per file: each finding its own failure
def test_no_import_cycle(file: str) -> None:
    module = module_name(SRC, SRC / file)
    found = [c for c in _CYCLES[module.split(".")[0]] if module in c]
    assert not found, f"{module} is in an import cycle among {', '.join(found[0])}"


@pytest.mark.parametrize("file", FILES)  # one case per file: each finding its own failure
def test_file_is_small(file: str) -> None:
    lines = line_count(SRC / file)
    assert lines <= MAX_LINES, f"{file} has {lines} lines, over {MAX_LINES}"


# ---------------------------------------------------------------------------- the checks can fail


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A source tree with one of each finding."""
    files = {
        "core/__init__.py": "from ._a import A\n",
        "core/_a.py": "from ._b import B\nA = 1\n",
        "core/_b.py": (
            "from typing import TYPE_CHECKING\nfrom . import _a\nif TYPE_CHECKING:\n"
            "    from ._c import C\nB = 2\n"
        ),
        "core/_c.py": "from ._b import B\ndef f():\n    from ._c import C\n",
        "core/public.py": "from ._a import A\n",
        "sdk/__init__.py": "from core import A\nfrom core.public import A\n",
        "sdk/_x.py": "import core._a\nfrom core import _b\nfrom core._c import f\n",
        "sdk/_long.py": "x = 1\n" * (MAX_LINES + 1),
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_private_imports_of_another_package_are_found(tree: Path) -> None:
    assert private_imports(tree, tree / "sdk/_x.py") == [
        "line 1: core._a",
        "line 2: core._b",
        "line 3: core._c",
    ]
    assert private_imports(tree, tree / "sdk/__init__.py") == []
    assert private_imports(tree, tree / "core/_b.py") == []  # its own package's


def test_cycles_count_module_level_imports_only(tree: Path) -> None:
    graph = import_graph(tree, "core")
    assert graph["core._b"] == {"core._a"}  # the TYPE_CHECKING import is left out
    assert graph["core._c"] == {"core._b"}  # the import inside a function is left out
    assert cycles(graph) == [["core._a", "core._b"]]
    assert cycles(import_graph(tree, "sdk")) == []


def test_long_files_are_found(tree: Path) -> None:
    assert line_count(tree / "sdk/_long.py") == MAX_LINES + 1
