"""The verl tool, loaded by verl's own tool-config loader and run through its async interface.

verl==0.9.1 is installed by scripts/extras/verl.sh (the CPU torch and only what its tool
loader imports); the tool leases real sandboxes from a warm pool on the local Docker engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rock_sdk import AlreadyExists, BadRequest, CommandFailed, NotFound, TransportError
from tests.conftest import PY_IMAGE

from ..envs.test_examples import _run as run_example
from .conftest import require
from .test_gem_registry import DOC, doc_blocks

pytestmark = pytest.mark.anyio

YAML = """\
tools:
  - class_name: rock_sdk.integrations.verl.SandboxTool
    config:
      type: native
      sandbox: {{image: "{image}", memory: 512m}}
      pool_min_size: 1
      pool_max_size: 2
      timeout: {timeout}
      verifier: "grep -q 42 /work/answer.txt"
"""


def load_tools(tmp_path: Path, timeout: float = 20) -> list[Any]:
    registry = require("verl.tools.tool_registry", "verl")
    path = tmp_path / "tools.yaml"
    path.write_text(YAML.format(image=PY_IMAGE, timeout=timeout))
    tools: list[Any] = registry.initialize_tools_from_config(str(path))
    return tools


def test_config_and_schema(tmp_path: Path) -> None:
    [tool] = load_tools(tmp_path)
    base_tool = require("verl.tools.base_tool", "verl")
    assert isinstance(tool, base_tool.BaseTool)
    assert tool.name == "run"
    schema = tool.get_openai_tool_schema().model_dump(exclude_none=True)
    assert schema["type"] == "function"
    assert schema["function"]["parameters"]["required"] == ["command"]
    assert tool.settings.sandbox.image == PY_IMAGE
    assert tool.settings.pool_max_size == 2


def test_bad_config_is_a_clear_error() -> None:
    require("verl", "verl")
    from rock_sdk.integrations.verl import SandboxTool

    with pytest.raises(BadRequest, match=r"rock verl tool config: .*pool_size"):
        SandboxTool({"type": "native", "pool_size": 3})
    with pytest.raises(BadRequest, match=r"need 0 <= pool_min_size <= pool_max_size"):
        SandboxTool({"type": "native", "pool_min_size": 4, "pool_max_size": 2})
    with pytest.raises(BadRequest, match=r"type must be 'native', got 'mcp'"):
        SandboxTool({"type": "mcp"})
    with pytest.raises(BadRequest, match=r"timeout and max_output must be positive"):
        SandboxTool({"timeout": 0})
    python = SandboxTool({"language": "python", "name": "python"})
    assert python.get_openai_tool_schema().function.parameters.required == ["code"]


async def test_create_files_that_are_not_a_mapping_is_a_clear_error() -> None:
    require("verl", "verl")
    from rock_sdk.integrations.verl import SandboxTool

    tool = SandboxTool({"sandbox": {"image": PY_IMAGE}})
    with pytest.raises(BadRequest, match=r"files must be a mapping of sandbox path to content"):
        await tool.create(files=["/work/a.txt"])  # checked before any sandbox is leased


@pytest.mark.docker
@pytest.mark.slow
async def test_a_trajectory_through_verls_interface(tmp_path: Path) -> None:
    from rock_sdk.integrations.verl import close_pools

    first, second = load_tools(tmp_path) + load_tools(tmp_path)
    try:
        # verl's ToolAgentLoop calls create(create_kwargs=...) with no instance id.
        instance, response = await first.create(
            create_kwargs={"files": {"/work/question.txt": "6 * 7"}}
        )
        assert response.is_empty()
        assert await first.calc_reward(instance) == 0.0

        text, reward, metrics = await first.execute(instance, {"command": "cat /work/question.txt"})
        assert (text.text, reward, metrics) == ("6 * 7", 0.0, {"exit_code": 0, "timed_out": False})

        # The shell is persistent: a variable set by one call is seen by the next.
        await first.execute(instance, {"command": "cd /work && ANSWER=$(python3 -c 'print(6*7)')"})
        text, _, _ = await first.execute(instance, {"command": "echo $ANSWER > answer.txt; pwd"})
        assert text.text == "/work\n"
        assert await first.calc_reward(instance) == 1.0

        text, _, metrics = await first.execute(instance, {"code": "import sys; sys.exit(3)"})
        assert text.text == "\n[exit code 3]" and metrics["exit_code"] == 3

        # Tools of the same settings share one warm pool.
        assert await first.pool() is await second.pool()
        other, _ = await second.create("trajectory-2", verifier="false")
        assert other == "trajectory-2"
        assert await second.calc_reward(other) == 0.0
        await second.release(other)
        await first.release(instance)
        stats = (await first.pool()).statistics()
        assert stats.hits >= 1
    finally:
        await close_pools()


@pytest.mark.docker
@pytest.mark.slow
async def test_errors_reach_verl_with_our_message(tmp_path: Path) -> None:
    from rock_sdk.integrations.verl import SandboxTool, close_pools

    [tool] = load_tools(tmp_path, timeout=1)
    try:
        with pytest.raises(BadRequest, match=r"unknown create arguments \['ground_truth'\]"):
            await tool.create(create_kwargs={"ground_truth": "42"})
        with pytest.raises(NotFound, match=r"no instance 'nope'"):
            await tool.execute("nope", {"command": "true"})
        instance, _ = await tool.create("one")
        with pytest.raises(AlreadyExists, match=r"instance 'one' already exists"):
            await tool.create("one")
        with pytest.raises(BadRequest, match=r"exactly one of 'command' or 'code'"):
            await tool.execute(instance, {"command": "true", "code": "pass"})
        text, _, metrics = await tool.execute(instance, {"command": "sleep 5"})
        assert text.text.endswith("[timed out after 1 s]") and metrics["timed_out"] is True
        await tool.release(instance)
        with pytest.raises(NotFound, match=r"no instance 'one'"):
            await tool.release(instance)
        no_verifier = SandboxTool({"sandbox": {"image": PY_IMAGE}})
        scored = SandboxTool({"sandbox": {"image": PY_IMAGE}, "reward": "stdout"})
        instance, _ = await no_verifier.create()
        with pytest.raises(BadRequest, match=r"no verifier: set `verifier` in the tool config"):
            await no_verifier.calc_reward(instance)
        await no_verifier.release(instance)
        instance, _ = await scored.create(verifier="echo checking; echo 0.25")
        assert await scored.calc_reward(instance) == 0.25
        await scored.release(instance)
        instance, _ = await scored.create(verifier="echo none")
        with pytest.raises(BadRequest, match=r"printed no number on its last line \(exit code 0\)"):
            await scored.calc_reward(instance)
        await scored.release(instance)
        # A failing setup fails the create, and its sandbox goes back to the pool.
        with pytest.raises(CommandFailed, match=r"command 'test -d /nope' exited 1"):
            await tool.create(setup="test -d /nope")
        assert (await tool.pool()).statistics().handed_out == 0
    finally:
        await close_pools()


@pytest.mark.docker
@pytest.mark.slow
def test_the_docs_python(capsys: pytest.CaptureFixture[str]) -> None:
    require("verl.tools.tool_registry", "verl")
    [block] = doc_blocks("verl", "python")
    exec(compile(block.replace("python:3.11", PY_IMAGE), str(DOC), "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[-3:] == ["2", " {'exit_code': 0, 'timed_out': False}", "1.0"]


@pytest.mark.docker
@pytest.mark.slow
def test_the_example() -> None:
    require("verl.tools.tool_registry", "verl")
    output = run_example("integrations/verl_tool.py")
    assert "reward before: 0.0\n" in output
    assert "AssertionError: -1" in output
    assert "    return sum((a, b))  (exit 0)\n" in output
    assert "42  (exit 0)\n" in output
    assert output.endswith("reward after: 1.0\n")


@pytest.mark.slow
async def test_a_pool_that_cannot_open_fails_create_with_the_clusters_error() -> None:
    require("verl", "verl")
    from rock_sdk.integrations.verl import SandboxTool, close_pools

    tool = SandboxTool({"hosts": ["unix:///nonexistent/agent.sock"]})
    try:
        with pytest.raises(TransportError, match=r"no agent listens on /nonexistent/agent.sock"):
            await tool.create()
    finally:
        await close_pools()


@pytest.mark.docker
@pytest.mark.slow
async def test_a_reward_that_is_no_number_and_a_racing_create_are_errors() -> None:
    import asyncio

    from rock_sdk.integrations.verl import SandboxTool, close_pools

    require("verl.tools.base_tool", "verl")
    scored = SandboxTool({"sandbox": {"image": PY_IMAGE}, "reward": "stdout"})
    try:
        # float() reads "nan" and "inf": a reward the trainer cannot use, so an error.
        for printed in ("nan", "-inf"):
            instance, _ = await scored.create(verifier=f"echo {printed}")
            with pytest.raises(BadRequest, match=rf"printed no number .*{printed}"):
                await scored.calc_reward(instance)
            await scored.release(instance)
        # Two creates of one id at once: one lease, the other is AlreadyExists (no leak).
        outcomes = await asyncio.gather(
            scored.create("same"), scored.create("same"), return_exceptions=True
        )
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        assert len(errors) == 1 and isinstance(errors[0], AlreadyExists), outcomes
        assert (await scored.pool()).statistics().handed_out == 1
        await scored.release("same")
        assert (await scored.pool()).statistics().handed_out == 0
    finally:
        await close_pools()
