"""Task environments against real Docker: real sandboxes, real shell sessions, real verifiers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from rock_core import Cluster, SandboxState
from rock_sdk import BadRequest, Sandbox, SandboxConfig, SandboxFailed
from rock_sdk.envs import (
    AsyncVectorEnv,
    ChatEnv,
    ColdStart,
    Hub,
    HubSpec,
    TaskEnv,
    TaskSpec,
)

from ..conftest import PY_IMAGE, labelled_containers

pytestmark = pytest.mark.anyio

#: Passes only when /work/greeting.txt holds exactly one line, "hello world".
HELLO = TaskSpec(
    name="hello-file",
    image=PY_IMAGE,
    instruction="Write the line 'hello world' into /work/greeting.txt.",
    setup=["mkdir -p /work", "cd /work"],
    verifier='test "$(cat /work/greeting.txt)" = "hello world"',
    max_turns=6,
    cpus=0.25,
    memory="256m",
)

#: Three checks, one per file a..c holding its own name; the verifier counts them.
THREE = msgspec.structs.replace(
    HELLO,
    name="three-files",
    instruction="Create /work/a, /work/b and /work/c, each holding its own name.",
    verifier="sh /opt/verify/check.sh",
    verifier_files={
        "/opt/verify/check.sh": (
            "n=0\n"
            'for f in a b c; do [ "$(cat /work/$f 2>/dev/null)" = "$f" ] && n=$((n+1)); done\n'
            'echo "ROCK_SCORE=$n/3"\n'
            "exit 1\n"
        )
    },
)


def solved(reward: float, terminated: bool, truncated: bool) -> bool:
    return reward == 1.0 and terminated and not truncated


async def _gone(sandbox: Sandbox) -> bool:
    return (await sandbox.status()).state is SandboxState.DELETED


async def test_commands_that_make_the_file_right_score_one(cluster: Cluster) -> None:
    env = TaskEnv(HELLO, cluster=cluster)
    try:
        observation, info = await env.areset()
        assert observation.startswith("Write the line 'hello world' into /work/greeting.txt.")
        assert "<bash>COMMAND</bash>" in observation and "You have 6 turns." in observation
        assert info["outcome"] == "reset" and info["turn"] == 0 and info["sandbox_id"]
        sandbox = env.sandbox
        assert sandbox is not None
        observation, reward, terminated, truncated, info = await env.astep(
            "I am in the setup's folder: <bash>pwd</bash>"
        )
        assert (observation, reward, terminated, truncated) == ("/work\n", 0.0, False, False)
        assert info["exit_code"] == 0 and info["outcome"] == "command"
        step = await env.astep("<bash>echo 'hello world' > greeting.txt && cat greeting.txt</bash>")
        assert step[0] == "hello world\n"
        observation, reward, terminated, truncated, info = await env.astep("Done. <submit/>")
        assert solved(reward, terminated, truncated)
        assert observation == "You submitted at turn 3. The verifier scored 1."
        assert info["outcome"] == "submitted" and info["score"] == 1.0
        assert info["verifier"]["exit_code"] == 0
        assert env.sandbox is None and await _gone(sandbox)  # given back at the episode's end
        with pytest.raises(BadRequest, match="no episode in progress"):
            await env.astep("<bash>ls</bash>")
    finally:
        await env.aclose()


async def test_a_wrong_file_scores_zero(cluster: Cluster) -> None:
    env = TaskEnv(HELLO, cluster=cluster)
    try:
        await env.areset()
        await env.astep("<bash>echo 'hello, world' > /work/greeting.txt</bash>")
        _, reward, terminated, truncated, info = await env.astep("<submit/>")
        assert (reward, terminated, truncated) == (0.0, True, False)
        assert info["verifier"]["exit_code"] == 1
    finally:
        await env.aclose()


async def test_score_line_gives_partial_credit_and_verifier_files_stay_hidden(
    cluster: Cluster,
) -> None:
    env = TaskEnv(THREE, cluster=cluster)
    try:
        await env.areset()
        hidden = await env.astep("<bash>ls /opt/verify</bash>")
        assert "No such file or directory" in hidden[0] and hidden[4]["exit_code"] != 0
        await env.astep("<bash>cd /work && echo a > a && echo b > b && echo x > c</bash>")
        observation, reward, terminated, _, info = await env.astep("<submit/>")
        assert reward == pytest.approx(2 / 3) and terminated
        assert observation.endswith("(2 of 3 checks passed).")
        verifier = info["verifier"]
        assert (verifier["passed"], verifier["total"], verifier["exit_code"]) == (2, 3, 1)
        assert verifier["output"] == "ROCK_SCORE=2/3\n"
    finally:
        await env.aclose()


async def test_a_submitted_answer_reaches_the_verifier(cluster: Cluster) -> None:
    task = msgspec.structs.replace(
        HELLO, verifier='test "$(cat "$ROCK_ANSWER_FILE")" = 42', setup=[]
    )
    env = TaskEnv(task, cluster=cluster)
    try:
        await env.areset()
        assert (await env.astep("<submit> 42 </submit>"))[1] == 1.0
        await env.areset()
        assert (await env.astep("<submit>41</submit>"))[1] == 0.0
        await env.areset()
        assert (await env.astep("<submit/>"))[1] == 0.0
    finally:
        await env.aclose()


async def test_an_action_without_a_tag_is_a_format_error(cluster: Cluster) -> None:
    env = TaskEnv(HELLO, cluster=cluster)
    try:
        await env.areset()
        sandbox = env.sandbox
        assert sandbox is not None
        observation, reward, terminated, truncated, info = await env.astep("ls -la")
        assert (reward, terminated, truncated) == (-0.1, True, False)
        assert observation.startswith("At turn 1, your action had neither <bash>COMMAND</bash>")
        assert info["outcome"] == "format_error" and "verifier" not in info
        assert await _gone(sandbox)
        with pytest.raises(BadRequest, match="no episode in progress"):
            await env.astep("<submit/>")
    finally:
        await env.aclose()


async def test_the_turn_limit_truncates_with_the_verifiers_score(cluster: Cluster) -> None:
    env = TaskEnv(HELLO, cluster=cluster, max_turns=2)
    try:
        await env.areset()
        first = await env.astep("<bash>true</bash>")
        assert first[1:4] == (0.0, False, False)
        observation, reward, terminated, truncated, info = await env.astep(
            "<bash>echo 'hello world' > greeting.txt</bash>"
        )
        assert (reward, terminated, truncated) == (1.0, False, True)
        assert observation == (
            "\nYou have reached the maximum number of turns (2). The verifier scored 1."
        )
        assert info["outcome"] == "truncated" and info["exit_code"] == 0
        await env.areset()
        await env.astep("<bash>true</bash>")
        _, reward, terminated, truncated, _ = await env.astep("<bash>true</bash>")
        assert (reward, terminated, truncated) == (0.0, False, True)
    finally:
        await env.aclose()


async def test_output_is_capped_with_the_truncation_marked(cluster: Cluster) -> None:
    env = TaskEnv(HELLO, cluster=cluster, output_limit=100)
    try:
        await env.areset()
        observation, _, _, _, info = await env.astep("<bash>seq 1 10000</bash>")
        total = len("".join(f"{i}\n" for i in range(1, 10001)))
        shown, note = observation[:100], observation[100:]
        assert shown == "".join(f"{i}\n" for i in range(1, 60))[:100]
        assert note.startswith(f"\n[output truncated: the first 100 of {total} bytes are shown;")
        assert info["output_truncated"] is True
        path = note.rsplit(" ", 1)[1].rstrip("]")
        tail = await env.astep(f"<bash>tail -n 1 {path}</bash>")
        assert tail[0] == "10000\n"
    finally:
        await env.aclose()


async def test_notes_for_exit_codes_timeouts_and_a_shell_that_exits(cluster: Cluster) -> None:
    env = TaskEnv(HELLO, cluster=cluster, command_timeout=1)
    try:
        await env.areset()
        assert (await env.astep("<bash>echo oops; exit_code() { return 3; }; exit_code</bash>"))[
            0
        ] == "oops\n[exit code 3]"
        assert (await env.astep("<bash>export KEEP=1; sleep 5</bash>"))[0] == (
            "[timed out after 1 s]"
        )
        assert (await env.astep("<bash>echo $KEEP; pwd</bash>"))[0] == "1\n/work\n"
        exited = await env.astep("<bash>exit 7</bash>")
        assert exited[0] == "[exit code 7]\n[the shell exited; a new one was started]"
        assert (await env.astep("<bash>echo alive</bash>"))[0] == "alive\n"
    finally:
        await env.aclose()


async def test_reset_gives_a_fresh_sandbox(cluster: Cluster) -> None:
    env = TaskEnv(HELLO, cluster=cluster)
    try:
        _, first = await env.areset()
        old = env.sandbox
        assert old is not None
        await env.astep("<bash>echo mark > /work/mark</bash>")
        _, second = await env.areset()
        assert second["sandbox_id"] != first["sandbox_id"]
        assert await _gone(old)
        observation = (await env.astep("<bash>ls /work</bash>"))[0]
        assert observation == ""  # the new sandbox has the setup's folder and nothing else
    finally:
        await env.aclose()
    assert env.sandbox is None


async def test_files_uploads_and_setup_prepare_the_sandbox(
    cluster: Cluster, tmp_path: Path
) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "input.txt").write_text("3 4\n")
    task = msgspec.structs.replace(
        HELLO,
        files={"/work/notes.md": "# notes\n"},
        uploads={"/work/data": str(tmp_path / "data")},
        setup=["cd /work", "export GREETING=hi"],
        env={"TASK_LEVEL": "easy"},
    )
    env = TaskEnv(task, cluster=cluster)
    try:
        await env.areset()
        observation = (
            await env.astep("<bash>cat notes.md data/input.txt; echo $GREETING $TASK_LEVEL</bash>")
        )[0]
        assert observation == "# notes\n3 4\nhi easy\n"
    finally:
        await env.aclose()


async def test_a_failing_setup_raises_and_gives_the_sandbox_back(cluster: Cluster) -> None:
    acquired: list[Sandbox] = []

    class Recording(ColdStart):
        async def acquire(self) -> Sandbox:
            sandbox = await super().acquire()
            acquired.append(sandbox)
            return sandbox

    task = msgspec.structs.replace(HELLO, setup=["true", "echo broken >&2; exit 4"])
    factory = Recording(task.sandbox_config(), cluster)
    env = TaskEnv(task, sandbox=factory)
    with pytest.raises(
        SandboxFailed,
        match=r"setup command 2 \('echo broken >&2; exit 4'\) "
        r"exited 4: broken",
    ):
        await env.areset()
    assert env.sandbox is None and len(acquired) == 1 and await _gone(acquired[0])
    await env.aclose()


async def test_a_factory_supplies_every_episode(cluster: Cluster) -> None:
    events: list[str] = []

    class Counting:
        def __init__(self) -> None:
            self.inner = ColdStart(HELLO.sandbox_config(), cluster)

        async def acquire(self) -> Sandbox:
            sandbox = await self.inner.acquire()
            events.append(f"acquire {sandbox.sandbox_id}")
            return sandbox

        async def release(self, sandbox: Sandbox) -> None:
            events.append(f"release {sandbox.sandbox_id}")
            await self.inner.release(sandbox)

    env = TaskEnv(HELLO, sandbox=Counting())
    _, first = await env.areset()
    _, second = await env.areset()
    await env.aclose()
    a, b = first["sandbox_id"], second["sandbox_id"]
    assert events == [f"acquire {a}", f"release {a}", f"acquire {b}", f"release {b}"]


async def test_an_env_in_the_callers_loop_refuses_the_sync_api(cluster: Cluster) -> None:
    env = TaskEnv(HELLO, cluster=cluster)
    with pytest.raises(BadRequest, match=r"call `await env.areset\(...\)` in that loop"):
        env.reset()
    env.close()  # holds nothing yet: fine
    await env.areset()
    with pytest.raises(BadRequest, match=r"await env.astep"):
        env.step("<bash>ls</bash>")
    with pytest.raises(BadRequest, match=r"await env.aclose"):
        env.close()
    await env.aclose()
    with pytest.raises(BadRequest, match="is closed"):
        await env.areset()


async def test_one_call_at_a_time(cluster: Cluster) -> None:
    env = TaskEnv(HELLO, cluster=cluster)
    try:
        await env.areset()
        errors: list[Exception] = []

        async def second() -> None:
            await anyio.sleep(0.2)
            try:
                await env.astep("<bash>true</bash>")
            except BadRequest as exc:
                errors.append(exc)

        async with anyio.create_task_group() as group:
            group.start_soon(second)
            await env.astep("<bash>sleep 1</bash>")
        assert len(errors) == 1 and "another call" in str(errors[0])
    finally:
        await env.aclose()


async def test_hub_tasks_run_in_an_async_vector_env(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROCK_HOME", str(tmp_path))
    Hub().register(HubSpec(name="hello", task=HELLO, tags=["test"]))
    async with AsyncVectorEnv("hub:hello", 2, cluster=cluster, max_turns=3) as envs:
        observations, _ = await envs.areset()
        assert all(o.startswith("Write the line") for o in observations)
        assert all(isinstance(env, TaskEnv) and env.task.max_turns == 3 for env in envs.envs)
        _, rewards, terminated, _, infos = await envs.astep(
            ["<bash>echo 'hello world' > greeting.txt</bash>", "<bash>true</bash>"]
        )
        assert rewards == [0.0, 0.0] and terminated == [False, False]
        _, rewards, terminated, _, infos = await envs.astep(["<submit/>", "<submit/>"])
        assert rewards == [1.0, 0.0] and terminated == [True, True]
        assert [info["final_info"]["outcome"] for info in infos] == ["submitted"] * 2
        assert infos[0]["sandbox_id"] != infos[0]["final_info"]["sandbox_id"]


async def test_the_chat_wrapper_plays_a_task(cluster: Cluster) -> None:
    chat = ChatEnv(TaskEnv(HELLO, cluster=cluster), system_prompt="You are a shell agent.")
    try:
        messages, _ = await chat.areset()
        assert [m["role"] for m in messages] == ["system", "user"]
        messages, *_ = await chat.astep(
            {"role": "assistant", "content": "<bash>echo 'hello world' > greeting.txt</bash>"}
        )
        messages, reward, terminated, _, _ = await chat.astep([*messages, _assistant("<submit/>")])
        assert reward == 1.0 and terminated
        roles = [m["role"] for m in messages]
        assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
        assert messages[-1]["content"] == "You submitted at turn 2. The verifier scored 1."
    finally:
        await chat.aclose()


def _assistant(content: str) -> dict[str, Any]:
    return {"role": "assistant", "content": content}


def containers_of(sandbox_id: str) -> list[str]:
    """Ids of the containers of a sandbox (none once it is deleted)."""
    return labelled_containers(f"rock.sandbox={sandbox_id}")


def test_the_sync_api_runs_its_own_loop_and_leaves_nothing(docker_engine: None) -> None:
    env = TaskEnv(HELLO)
    try:
        _, info = env.reset()
        first = info["sandbox_id"]
        env.step("<bash>echo 'hello world' > greeting.txt</bash>")
        _, reward, terminated, _, _ = env.step("<submit/>")
        assert reward == 1.0 and terminated
        _, info = env.reset()
        second = info["sandbox_id"]
    finally:
        env.close()
    env.close()  # twice is fine
    with pytest.raises(BadRequest, match="is closed"):
        env.reset()
    assert containers_of(first) == [] and containers_of(second) == []


def test_sandbox_config_replaces_the_tasks(docker_engine: None) -> None:
    with pytest.raises(BadRequest, match="cannot use a given Sandbox"):
        TaskEnv(HELLO, sandbox=Sandbox(SandboxConfig(image=PY_IMAGE)))
    env = TaskEnv(HELLO, sandbox=SandboxConfig(image=PY_IMAGE, cpus=0.1, memory="128m"))
    try:
        env.reset()
        observation = env.step(
            "<bash>cat /sys/fs/cgroup/memory.max 2>/dev/null"  # cgroup v2, else v1
            " || cat /sys/fs/cgroup/memory/memory.limit_in_bytes</bash>"
        )[0]
        assert observation == f"{128 << 20}\n"
    finally:
        env.close()
