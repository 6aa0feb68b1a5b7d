"""How the engine's refusals are typed (`_engine.engine_errors`), from the engine's own words."""

from __future__ import annotations

import pytest
from aiodocker.exceptions import DockerError

from rock_agent._engine import engine_errors
from rock_core import BadRequest, SandboxFailed, SandboxNotFound

GONE = "Container 2bc1 is not running: Exited (137) Less than a second ago"


@pytest.mark.parametrize("status", [409, 500])
def test_a_container_that_stopped_under_a_request_is_said_so(status: int) -> None:
    # An exec's start that races the container's end is answered 500, most requests 409.
    with pytest.raises(SandboxFailed) as caught, engine_errors("starting a process in sb-1"):
        raise DockerError(status, GONE)
    assert "the sandbox is not running (its processes have all ended)" in str(caught.value)
    assert GONE in str(caught.value)


def test_other_answers_keep_their_types() -> None:
    with pytest.raises(SandboxNotFound), engine_errors("inspecting sb-1"):
        raise DockerError(404, "No such container: sb-1")
    with pytest.raises(BadRequest), engine_errors("creating sb-1"):
        raise DockerError(409, "Conflict. The name is already in use")
    with pytest.raises(SandboxFailed) as caught, engine_errors("creating sb-1"):
        raise DockerError(500, "driver failed")
    assert "engine answered 500: driver failed" in str(caught.value)
    assert "not running" not in str(caught.value)
