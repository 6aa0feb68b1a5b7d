"""The runtime seam holds: only the Docker implementation's modules touch aiodocker (or aiohttp),
and the rest of the agent reaches the engine only through `ContainerRuntime`."""

from __future__ import annotations

import ast
import typing
from pathlib import Path

import pytest

import rock_agent
from rock_agent import _runtime

PACKAGE = Path(rock_agent.__file__).parent
# The Docker implementation: the only modules that may import the engine's client.
DOCKER = {
    "_docker",
    "_docker_engine",
    "_docker_engine_calls",
    "_docker_images",
    "_docker_json",
    "_docker_logs",
    "_docker_netpol",
    "_docker_pause",
    "_engine",
    "_archive",
    "_exec_stream",
    "_exec_tty",
    "_podman",  # the Docker runtime on Podman's Docker-compatible API
}
ENGINE_CLIENTS = {"aiodocker", "aiohttp"}
# Modules that choose the implementation: the CLI makes a runtime (`_runtime_choice` picks
# Docker or Podman), the package exports it.
CHOOSERS = {"__init__", "_cli", "_runtime_choice"}


def imported(source: str) -> set[str]:
    """Every module a source imports: absolute names, and relative ones as ".name"."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                found.add(node.module)
            elif node.level == 1:
                names = [node.module] if node.module else [a.name for a in node.names]
                found |= {f".{name}" for name in names}
    return found


def engine_clients(source: str) -> set[str]:
    return {name for name in imported(source) if name.split(".")[0] in ENGINE_CLIENTS}


def modules() -> dict[str, str]:
    return {path.stem: path.read_text() for path in sorted(PACKAGE.glob("*.py"))}


def test_only_the_docker_modules_import_the_engine_client() -> None:
    found = {name: engine_clients(source) for name, source in modules().items()}
    offenders = {name: sorted(clients) for name, clients in found.items() if clients}
    assert set(offenders) <= DOCKER, f"outside the Docker runtime: {offenders}"
    assert "_docker" in offenders, "the scan found no import at all: is it looking?"


def test_only_the_choosers_import_the_docker_modules() -> None:
    docker = {f".{name}" for name in DOCKER}
    offenders = {
        name: sorted(imported(source) & docker)
        for name, source in modules().items()
        if name not in DOCKER | CHOOSERS and imported(source) & docker
    }
    assert not offenders, f"modules that reach past ContainerRuntime: {offenders}"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import aiodocker", {"aiodocker"}),
        ("from aiodocker.exceptions import DockerError", {"aiodocker.exceptions"}),
        ("import aiohttp as web", {"aiohttp"}),
        ("from . import _docker\nimport anyio", set()),
    ],
)
def test_the_scan_sees_every_form_of_import(source: str, expected: set[str]) -> None:
    assert engine_clients(source) == expected


def test_the_scan_sees_relative_imports() -> None:
    assert imported("from . import _docker, _shell\nfrom ._engine import Bounds") == {
        "._docker",
        "._shell",
        "._engine",
    }


def test_no_any_crosses_the_seam() -> None:
    """Every method of `ContainerRuntime` and `Process` is typed without `Any`."""
    for protocol in (_runtime.ContainerRuntime, _runtime.Process):
        for name, member in vars(protocol).items():
            if name.startswith("_") or not callable(member):
                continue
            hints = typing.get_type_hints(member, vars(_runtime))
            assert hints, f"{protocol.__name__}.{name} has no annotations"
            assert typing.Any not in hints.values(), f"{protocol.__name__}.{name} takes Any"
            assert "Any" not in repr(hints), f"{protocol.__name__}.{name}: {hints}"
