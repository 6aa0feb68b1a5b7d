"""mini-swe-agent (the real package) drives `RockEnvironment` against real Docker.

Its own `DefaultAgent` and scripted `DeterministicModel` solve a small task through the
environment it resolves by import path; the edge cases of `execute` share one environment.
"""

from __future__ import annotations

import gc
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rock_sdk import BadRequest, CommandFailed, ImageNotFound

from ..conftest import PY_IMAGE, SH_IMAGE
from .conftest import require

os.environ.setdefault("MSWEA_SILENT_STARTUP", "1")
require("minisweagent", "mini-swe-agent")

from minisweagent.agents.default import DefaultAgent  # noqa: E402
from minisweagent.environments import get_environment  # noqa: E402
from minisweagent.exceptions import Submitted  # noqa: E402
from minisweagent.models.test_models import DeterministicModel, make_output  # noqa: E402

from rock_sdk.integrations.minisweagent import RockEnvironment  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
IMPORT_PATH = "rock_sdk.integrations.minisweagent.RockEnvironment"
SENTINEL = "COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"
ADD_PY = "def add(a, b):\n    return a + b\n"


def sandbox_containers(sandbox_id: str) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=rock.sandbox={sandbox_id}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()


def step(command: str) -> dict[str, Any]:
    return make_output(
        f"THOUGHT: next.\n\n```mswea_bash_command\n{command}\n```", [{"command": command}]
    )


@pytest.fixture(scope="module")
def env(docker_engine: None) -> Iterator[RockEnvironment]:
    environment = RockEnvironment(image=PY_IMAGE, cwd="/tmp", env={"GREETING": "hi"}, timeout=5)
    try:
        yield environment
    finally:
        environment.cleanup()


# ---------------------------------------------------------------------------- the agent loop


@pytest.mark.docker
@pytest.mark.slow
def test_default_agent_solves_a_task_in_a_sandbox(docker_engine: None, tmp_path: Path) -> None:
    env = get_environment({"environment_class": IMPORT_PATH, "image": PY_IMAGE, "timeout": 20})
    assert isinstance(env, RockEnvironment)
    # Each step relies on the last one's cd and export: the session persists.
    model = DeterministicModel(
        outputs=[
            step("mkdir -p /task && cd /task && export CHECK=passed"),
            step(f"printf '{ADD_PY}' > add.py && ls"),
            step("python3 -c 'from add import add; assert add(2, 3) == 5' && echo $CHECK"),
            step(f"echo {SENTINEL} && cat add.py"),
        ]
    )
    trajectory = tmp_path / "traj.json"
    agent = DefaultAgent(
        model,
        env,
        system_template="You solve tasks on {{system}} {{machine}}.",
        instance_template="Task: {{task}}",
        step_limit=10,
        cost_limit=0,
        output_path=trajectory,
    )
    try:
        result = agent.run("write add.py with add(a, b)")
        assert result == {"exit_status": "Submitted", "submission": ADD_PY}
        observations = [m["content"] for m in agent.messages if m["role"] == "user"][1:]
        assert observations[1] == "<returncode>0</returncode>\n<output>\nadd.py\n</output>"
        assert observations[2] == "<returncode>0</returncode>\n<output>\npassed\n</output>"
        assert agent.messages[0]["content"] == "You solve tasks on Linux x86_64."
        saved = json.loads(trajectory.read_text())
        assert saved["info"]["config"]["environment_type"] == IMPORT_PATH
        assert saved["info"]["config"]["environment"]["image"] == PY_IMAGE
        assert env.execute({"command": "cat /task/add.py"})["output"] == ADD_PY
    finally:
        env.cleanup()
    assert sandbox_containers(env.sandbox_id) == []


# ---------------------------------------------------------------------------- execute


@pytest.mark.docker
def test_cd_and_variables_persist_and_config_env_is_set(env: RockEnvironment) -> None:
    assert env.execute({"command": "cd /usr && N=7"}) == {
        "output": "",
        "returncode": 0,
        "exception_info": "",
    }
    assert env.execute({"command": "echo $N $GREETING; pwd"})["output"] == "7 hi\n/usr\n"
    assert env.execute({"command": "pwd"}, cwd="/etc")["output"] == "/etc\n"
    assert env.execute({"command": "pwd"})["output"] == "/etc\n"  # a cwd is entered, as cd
    empty = env.execute({"command": "  "}, cwd="/var")  # an empty command only enters cwd
    assert empty == {"output": "", "returncode": 0, "exception_info": ""}
    assert env.execute({"command": "pwd"})["output"] == "/var\n"


@pytest.mark.docker
def test_non_zero_exit_is_the_returncode(env: RockEnvironment) -> None:
    out = env.execute({"command": "echo oops >&2; exit_code() { return 3; }; exit_code"})
    assert out == {"output": "oops\n", "returncode": 3, "exception_info": ""}
    missing = env.execute({"command": "pwd\ntouch /tmp/ran"}, cwd="/no/such/dir")
    assert missing["returncode"] == 1
    assert "/no/such/dir" in missing["output"]
    assert env.execute({"command": "test -e /tmp/ran"})["returncode"] == 1


@pytest.mark.docker
@pytest.mark.slow
def test_a_timeout_is_answered_in_mini_swe_agents_form(env: RockEnvironment) -> None:
    out = env.execute({"command": "echo started; sleep 30"}, timeout=2)
    message = "Command 'echo started; sleep 30' timed out after 2 seconds"
    assert out == {
        "output": "started\n",
        "returncode": -1,
        "exception_info": f"An error occurred while executing the command: {message}",
        "extra": {"exception_type": "TimeoutExpired", "exception": message},
    }
    assert env.execute({"command": "echo $GREETING"})["output"] == "hi\n"  # the session lives


@pytest.mark.docker
def test_exit_ends_the_shell_and_the_next_action_gets_a_fresh_one(env: RockEnvironment) -> None:
    env.execute({"command": "cd /var && LOST=1"})
    assert env.execute({"command": "exit 4"})["returncode"] == 4
    assert env.execute({"command": "echo ${LOST:-gone}; pwd"})["output"] == "gone\n/tmp\n"


@pytest.mark.docker
def test_binary_and_large_output(env: RockEnvironment) -> None:
    out = env.execute({"command": r"printf 'a\377\000b'"})
    assert out["output"] == "a\ufffd\x00b"
    big = env.execute({"command": "head -c 3000000 /dev/zero | tr '\\0' x"})
    assert big["returncode"] == 0
    assert big["output"].startswith("x" * 1000)
    note = re.search(
        r"\[output truncated: (\d+) bytes in all, kept in the sandbox at (\S+)\]", big["output"]
    )
    assert note is not None and int(note.group(1)) == 3_000_000
    assert env.execute({"command": f"wc -c < {note.group(2)}"})["output"] == "3000000\n"


@pytest.mark.docker
def test_the_submit_line_raises_submitted_only_on_success(env: RockEnvironment) -> None:
    with pytest.raises(Submitted) as info:
        env.execute({"command": f"printf '  {SENTINEL}\\nthe patch\\n'"})
    assert info.value.messages == (
        {
            "role": "exit",
            "content": "the patch\n",
            "extra": {"exit_status": "Submitted", "submission": "the patch\n"},
        },
    )
    failed = env.execute({"command": f"echo {SENTINEL}; false"})
    assert failed["returncode"] == 1
    later = env.execute({"command": f"echo before; echo {SENTINEL}"})
    assert later["returncode"] == 0


@pytest.mark.docker
@pytest.mark.parametrize(
    ("action", "kwargs", "message"),
    [
        ("ls", {}, "an action is a dict with a 'command', got 'ls'"),
        ({"command": ["ls"]}, {}, "an action's command must be a string, got ['ls']"),
        (
            {"command": "ls"},
            {"timeout": -1},
            "timeout must be a positive number of seconds, got -1",
        ),
        ({"command": "ls"}, {"timeout": "5"}, "timeout must be a number of seconds, got '5'"),
        ({"command": "ls"}, {"cwd": 3}, "cwd must be a string, got 3"),
    ],
)
def test_bad_input_is_a_bad_request(
    env: RockEnvironment, action: Any, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(BadRequest) as info:
        env.execute(action, **kwargs)
    assert str(info.value) == message


@pytest.mark.docker
def test_template_vars_and_serialize(env: RockEnvironment) -> None:
    values = env.get_template_vars(extra=1)
    assert (values["system"], values["machine"], values["extra"]) == ("Linux", "x86_64", 1)
    assert values["cwd"] == "/tmp" and values["timeout"] == 5
    assert env.serialize()["info"]["config"] == {
        "environment": {
            "image": PY_IMAGE,
            "cwd": "/tmp",
            "env": {"GREETING": "hi"},
            "forward_env": [],
            "timeout": 5,
            "cpus": 1.0,
            "memory": "1g",
            "network": False,
            "hosts": ["local"],
            "output_limit": 1 << 20,
            "startup": "",
        },
        "environment_type": IMPORT_PATH,
    }


# ---------------------------------------------------------------------------- lifetime, config


@pytest.mark.docker
def test_a_busybox_image_and_garbage_collection_delete_the_sandbox(docker_engine: None) -> None:
    os.environ["ROCK_TEST_FORWARDED"] = "from-host"
    try:
        env = RockEnvironment(image=SH_IMAGE, forward_env=["ROCK_TEST_FORWARDED", "UNSET_VAR_X"])
    finally:
        del os.environ["ROCK_TEST_FORWARDED"]
    sandbox_id = env.sandbox_id
    env.execute({"command": "cd /tmp; V=2"})
    out = env.execute({"command": 'echo "$V $ROCK_TEST_FORWARDED ${UNSET_VAR_X-unset}"; pwd'})
    assert out["output"] == "2 from-host unset\n/tmp\n"
    assert len(sandbox_containers(sandbox_id)) == 1
    del env
    gc.collect()
    assert sandbox_containers(sandbox_id) == []


@pytest.mark.docker
def test_a_sandbox_removed_under_the_agent_is_an_answer_not_an_exception(
    docker_engine: None,
) -> None:
    with RockEnvironment(image=SH_IMAGE) as env:
        (container,) = sandbox_containers(env.sandbox_id)
        subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=True)
        out = env.execute({"command": "echo never"})
    assert out["output"] == "" and out["returncode"] == -1
    kind, message = out["extra"]["exception_type"], out["extra"]["exception"]
    assert out["exception_info"] == f"An error occurred while executing the command: {message}"
    # The agent may or may not have seen the engine's removal event before the command.
    sandbox_id = env.sandbox_id
    assert kind == "SandboxNotFound"
    pattern = rf"sandbox {sandbox_id} was deleted|no sandbox '{sandbox_id}' on host \S+"
    assert re.fullmatch(pattern, message), message


@pytest.mark.docker
def test_startup_runs_in_each_new_session_and_docker_only_keys_are_ignored(
    docker_engine: None,
) -> None:
    with pytest.raises(CommandFailed) as info:
        RockEnvironment(image=SH_IMAGE, startup="echo setting up; false")
    assert str(info.value) == "command 'echo setting up; false' exited 1"
    # The startup fails once (it finds the mark, removes it), then works again.
    startup = "S=set; cd /tmp; test ! -e /tmp/mark || { rm /tmp/mark; false; }"
    docker_keys = {"interpreter": ["bash", "-c"], "run_args": ["--rm"], "pull_timeout": 9}
    with RockEnvironment(image=SH_IMAGE, startup=startup, **docker_keys) as env:
        assert env.execute({"command": "echo $S; pwd"})["output"] == "set\n/tmp\n"
        assert env.execute({"command": "touch /tmp/mark; exit"})["returncode"] == 0
        failed = env.execute({"command": "echo lost"})
        assert failed["returncode"] == -1
        assert failed["extra"] == {
            "exception_type": "CommandFailed",
            "exception": f"command {startup!r} exited 1",
        }
        assert env.execute({"command": "echo $S; pwd"})["output"] == "set\n/tmp\n"
        assert "interpreter" not in env.serialize()["info"]["config"]["environment"]


@pytest.mark.docker
def test_a_failed_start_raises_and_leaves_no_loop_thread(docker_engine: None) -> None:
    def loops() -> int:
        return sum(t.name == "rock-mini-swe-agent" for t in threading.enumerate())

    before = loops()
    with pytest.raises(ImageNotFound) as info:
        RockEnvironment(image="rock-test/no-such-image:never")
    assert str(info.value).startswith(
        "image 'rock-test/no-such-image:never' is not on this host and could not be pulled"
    )
    assert loops() == before


@pytest.mark.docker
def test_a_closed_environment_refuses_actions(docker_engine: None) -> None:
    with RockEnvironment(image=SH_IMAGE) as env:
        assert env.execute({"command": "echo ok"})["output"] == "ok\n"
    with pytest.raises(BadRequest) as info:
        env.execute({"command": "echo ok"})
    assert str(info.value) == "this mini-swe-agent environment is closed (cleanup() was called)"
    env.cleanup()  # again: nothing to do


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"imag": "x"}, "mini-swe-agent environment config: Object contains unknown field `imag`"),
        ({"timeout": 0}, "config timeout must be a positive number of seconds, got 0"),
        ({"hosts": []}, "mini-swe-agent environment config: hosts is empty; use ['local']"),
        ({"memory": "lots"}, "memory 'lots' is not a size such as '512m' or '1g'"),
        ({"output_limit": 0}, "output_limit must be positive, got 0"),
    ],
)
def test_a_bad_config_is_a_bad_request(config: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest) as info:
        RockEnvironment(**config)
    assert str(info.value) == message


# ---------------------------------------------------------------------------- docs and example


def _doc_snippets() -> list[str]:
    text = (ROOT / "docs" / "integrations.md").read_text()
    section = text.split("\n## mini-swe-agent\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)


@pytest.mark.docker
@pytest.mark.slow
def test_the_docs_snippet_runs(docker_engine: None) -> None:
    snippets = _doc_snippets()
    assert len(snippets) == 1
    done = subprocess.run(
        [sys.executable, "-c", snippets[0]], capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr
    assert "Submitted" in done.stdout


@pytest.mark.docker
@pytest.mark.slow
def test_the_example_runs(docker_engine: None) -> None:
    example = ROOT / "examples" / "integrations" / "minisweagent_run.py"
    done = subprocess.run(
        [sys.executable, str(example)], capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("exit status: Submitted\nsubmission: 55\n")
