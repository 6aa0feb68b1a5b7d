"""No test of the core waits on real time or does real I/O: `tests/core` runs in virtual time.

Rules (checked on each module's syntax tree, so a comment or a string never counts):
- No module calls `time.sleep` (it blocks the thread, and no clock can skip it).
- A module that waits on a clock (an anyio, trio or asyncio sleep, timeout or deadline) takes
  the virtual backend: ``from tests.core.virtual import anyio_backend``. A helper module that
  waits may be imported only by modules that take it.
- A module with async tests takes the virtual backend and chooses no other: it defines no
  `anyio_backend` of its own and does not parametrize one.
- No module does real I/O (sockets, processes, threads): an autojumping clock would skip past
  a wait on the operating system, so such tests belong in `tests/integration`.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CORE = Path(__file__).parent
PACKAGE = "tests.core"
VIRTUAL = f"{PACKAGE}.virtual"

_TIMED = ("sleep", "sleep_until", "fail_after", "fail_at", "move_on_after", "move_on_at")
WAITS = {f"{lib}.{name}" for lib in ("anyio", "trio") for name in _TIMED} | {
    "asyncio.sleep",
    "asyncio.wait_for",
    "asyncio.timeout",
    "asyncio.timeout_at",
}
REAL_IO = {
    "anyio.connect_tcp",
    "anyio.connect_unix",
    "anyio.create_tcp_listener",
    "anyio.create_unix_listener",
    "anyio.create_udp_socket",
    "anyio.create_connected_udp_socket",
    "anyio.open_process",
    "anyio.run_process",
    "anyio.to_thread.run_sync",
    "anyio.to_process.run_sync",
    "anyio.wait_readable",
    "anyio.wait_writable",
}
REAL_IO_MODULES = {"socket", "subprocess", "threading", "multiprocessing", "selectors"}


@dataclass
class Module:
    """What one module imports and uses, as far as time and I/O go."""

    name: str
    aliases: dict[str, str] = field(default_factory=dict)  # local name -> dotted origin
    imported: set[str] = field(default_factory=set)  # dotted names of modules it imports from
    uses: list[tuple[int, str]] = field(default_factory=list)  # (line, dotted name)
    async_tests: bool = False
    own_backend: list[int] = field(default_factory=list)  # lines that choose a backend

    @property
    def virtual(self) -> bool:
        return VIRTUAL in self.imported

    def waits(self) -> list[tuple[int, str]]:
        return [(line, name) for line, name in self.uses if name in WAITS]


def _absolute(node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = PACKAGE.split(".")[: len(PACKAGE.split(".")) - node.level + 1]
    return ".".join([*base, *([node.module] if node.module else [])])


def _dotted(node: ast.expr, aliases: dict[str, str]) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name) or node.id not in aliases:
        return None
    return ".".join([aliases[node.id], *reversed(parts)])


def read_module(name: str, source: str) -> Module:
    """The facts of one module of `tests.core` called `name`, from its source."""
    tree = ast.parse(source)
    module = Module(name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                module.imported.add(alias.name)
                if alias.name.split(".")[0] in REAL_IO_MODULES:
                    module.uses.append((node.lineno, alias.name))
                local = alias.asname or alias.name.split(".")[0]
                module.aliases[local] = alias.name if alias.asname else local
        elif isinstance(node, ast.ImportFrom):
            origin = _absolute(node)
            module.imported.add(origin)
            for alias in node.names:
                module.aliases[alias.asname or alias.name] = f"{origin}.{alias.name}"
                if origin.split(".")[0] in REAL_IO_MODULES:
                    module.uses.append((node.lineno, f"{origin}.{alias.name}"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute | ast.Name) and isinstance(node.ctx, ast.Load):
            dotted = _dotted(node, module.aliases)
            if dotted in WAITS | REAL_IO | {"time.sleep"}:
                module.uses.append((node.lineno, dotted))
        elif isinstance(node, ast.AsyncFunctionDef) and node.name.startswith("test"):
            module.async_tests = True
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if node.name == "anyio_backend":
                module.own_backend.append(node.lineno)
        elif isinstance(node, ast.Call) and (_dotted(node.func, module.aliases) or "").endswith(
            "parametrize"
        ):
            names = node.args[0] if node.args else None
            if isinstance(names, ast.Constant) and "anyio_backend" in str(names.value):
                module.own_backend.append(node.lineno)
    return module


def offences(modules: list[Module]) -> list[str]:
    """Every way `modules` (all of `tests.core`) break the rules of this file's docstring."""
    found: list[str] = []
    importers = {m.name: [o for o in modules if m.name in o.imported] for m in modules}
    for m in modules:
        if m.name == VIRTUAL:
            continue
        for line, name in sorted(set(m.uses)):
            if name == "time.sleep":
                found.append(f"{m.name}:{line}: time.sleep blocks the thread; no clock skips it")
            elif name not in WAITS:
                found.append(f"{m.name}:{line}: {name} is real I/O: move the test to integration")
        for line, name in sorted(set(m.waits())):
            if m.name.rpartition(".")[2].startswith("test_"):
                if not m.virtual:
                    found.append(f"{m.name}:{line}: {name} waits in real time: take {VIRTUAL}")
            else:
                for user in importers[m.name]:
                    if not user.virtual:
                        found.append(
                            f"{m.name}:{line}: {name} waits in real time for {user.name},"
                            f" which does not take {VIRTUAL}"
                        )
        if m.async_tests and not m.virtual:
            found.append(f"{m.name}: its async tests do not take {VIRTUAL}")
        for line in m.own_backend:
            found.append(f"{m.name}:{line}: chooses its own anyio_backend instead of {VIRTUAL}")
    return found


def core_modules() -> list[Module]:
    return [
        read_module(f"{PACKAGE}.{path.stem}", path.read_text())
        for path in sorted(CORE.glob("*.py"))
    ]


def test_no_module_of_the_core_tests_waits_on_real_time_or_does_real_io() -> None:
    modules = core_modules()
    assert {"tests.core.test_connection", "tests.core.pool_kit"} <= {m.name for m in modules}
    assert offences(modules) == []


VIRTUAL_IMPORT = "from tests.core.virtual import anyio_backend\n"
ASYNC_TEST = "async def test_x() -> None:\n    pass\n"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "import time\ntime.sleep(1)\n",
            ["tests.core.test_m:2: time.sleep blocks the thread; no clock skips it"],
        ),
        (
            VIRTUAL_IMPORT + "from time import sleep as nap\nnap(1)\n",
            ["tests.core.test_m:3: time.sleep blocks the thread; no clock skips it"],
        ),
        (
            "import anyio\nasync def f() -> None:\n    await anyio.sleep(0.1)\n",
            [f"tests.core.test_m:3: anyio.sleep waits in real time: take {VIRTUAL}"],
        ),
        (
            "import trio as t\ndef f() -> None:\n    with t.move_on_after(1):\n        pass\n",
            [f"tests.core.test_m:3: trio.move_on_after waits in real time: take {VIRTUAL}"],
        ),
        (
            "from anyio import fail_after\nwith fail_after(1):\n    pass\n" + ASYNC_TEST,
            [
                f"tests.core.test_m:2: anyio.fail_after waits in real time: take {VIRTUAL}",
                f"tests.core.test_m: its async tests do not take {VIRTUAL}",
            ],
        ),
        (
            VIRTUAL_IMPORT
            + "import anyio\nasync def f() -> None:\n    await anyio.connect_tcp()\n",
            ["tests.core.test_m:4: anyio.connect_tcp is real I/O: move the test to integration"],
        ),
        (
            "import socket\n",
            ["tests.core.test_m:1: socket is real I/O: move the test to integration"],
        ),
        (
            "import pytest\n@pytest.fixture\ndef anyio_backend() -> str:\n    return 'asyncio'\n",
            [f"tests.core.test_m:3: chooses its own anyio_backend instead of {VIRTUAL}"],
        ),
        (
            VIRTUAL_IMPORT + "import pytest\npytestmark = pytest.mark.parametrize("
            "'anyio_backend', ['asyncio'])\n",
            [f"tests.core.test_m:3: chooses its own anyio_backend instead of {VIRTUAL}"],
        ),
        (
            VIRTUAL_IMPORT
            + "import anyio\nasync def test_x() -> None:\n    await anyio.sleep(9)\n",
            [],
        ),
        ("import anyio\nasync def f() -> None:\n    await anyio.sleep_forever()\n", []),
        ("import time\nSTAMP = time.time()  # reading a clock is no wait\n", []),
    ],
)
def test_the_check_names_each_offence(source: str, expected: list[str]) -> None:
    assert offences([read_module("tests.core.test_m", source)]) == expected


def test_a_helper_that_waits_needs_every_importer_in_virtual_time() -> None:
    helper = read_module(
        "tests.core.kit", "import anyio\nasync def until() -> None:\n    await anyio.sleep(0.005)\n"
    )
    virtual = read_module("tests.core.test_v", VIRTUAL_IMPORT + "from .kit import until\n")
    real = read_module("tests.core.test_r", "from tests.core.kit import until\n")
    assert offences([helper, virtual]) == []
    assert offences([helper, virtual, real]) == [
        "tests.core.kit:3: anyio.sleep waits in real time for tests.core.test_r,"
        f" which does not take {VIRTUAL}"
    ]
