"""Reliability fixtures: the integration suite's (one embedded core with a local agent per
module, real Docker), reused as they are."""

from __future__ import annotations

import pytest

from ..integration.conftest import anyio_backend, cluster, py_sandbox, sandbox

__all__ = ["anyio_backend", "cluster", "py_sandbox", "sandbox"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "reliability" in str(item.fspath):
            item.add_marker(pytest.mark.docker)
