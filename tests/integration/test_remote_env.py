"""Registered environments run inside real sandboxes (`make(id, sandbox=...)`)."""

from __future__ import annotations

import concurrent.futures
import random
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from rock_core import Cluster, SandboxState
from rock_sdk import (
    BadRequest,
    NotFound,
    RockError,
    Sandbox,
    SandboxConfig,
    SandboxFailed,
    SessionNotFound,
)
from rock_sdk.envs import (
    AsyncVectorEnv,
    ChatEnv,
    ColdStart,
    Hub,
    HubSpec,
    RemoteEnv,
    SyncVectorEnv,
    TextGame,
    list_envs,
    make,
    register,
)

from ..conftest import PY_IMAGE
from ..envs.custom_envs import EchoEnv
from .test_task_env import containers_of

pytestmark = pytest.mark.anyio

EASY = [env_id for env_id in list_envs("game:") if env_id.endswith("-easy")]

register("test:Echo-v0", "tests.envs.custom_envs:EchoEnv", greeting="hi")
# An "environment" whose construction in the sandbox hangs: the start can be cancelled midway.
register("test:SlowMake-v0", "subprocess:run", args=["sleep", "120"])


@pytest.fixture(scope="module")
async def shared(cluster: Cluster) -> AsyncIterator[Sandbox]:
    """One sandbox that several remote envs share, each in its own session."""
    sb = Sandbox(SandboxConfig(image=PY_IMAGE, cpus=0.5, memory="512m"), cluster=cluster)
    await sb.start()
    try:
        yield sb
    finally:
        await sb.delete()


def _script(env_id: str, seed: int, steps: int) -> list[str]:
    """Random well-formed moves from the local game's own generator, fixed by `seed`."""
    game = make(env_id)
    assert isinstance(game, TextGame)
    game.reset(seed=seed)
    rng = random.Random(seed)
    moves = [game.sample_random_action() for _ in range(steps)]
    return [m if rng.random() > 0.05 else "no box here" for m in moves]


@pytest.mark.parametrize("env_id", EASY)
async def test_a_game_in_a_sandbox_matches_it_in_process(shared: Sandbox, env_id: str) -> None:
    local = make(env_id)
    remote = make(env_id, sandbox=shared)
    assert isinstance(remote, RemoteEnv) and remote.env_id == env_id
    try:
        for seed in (0, 7):
            assert await remote.areset(seed=seed) == local.reset(seed=seed)
            for action in _script(env_id, seed, 40):
                expected = local.step(action)
                assert await remote.astep(action) == expected
                if expected[2] or expected[3]:
                    assert await remote.areset() == local.reset()
    finally:
        await remote.aclose()
    assert remote.sandbox is None
    assert (await shared.status()).is_running  # the caller's sandbox is kept


async def test_custom_code_is_shipped_and_runs_without_gymnasium(shared: Sandbox) -> None:
    env = make("test:Echo-v0", sandbox=shared, max_turns=2)
    try:
        observation, info = await env.areset(seed=5, options={"level": 2})
        assert (observation, info) == ("hi 5", {"options": {"level": 2}, "gymnasium": False})
        assert await env.astep("noise") == ("noise", 0.5, False, False, {"turn": 1})
        assert await env.astep("two") == ("two", 0.5, False, True, {"turn": 2})
    finally:
        await env.aclose()


async def test_errors_inside_the_sandbox_come_back_as_ours(shared: Sandbox) -> None:
    bad = make("game:Sokoban-v0-easy", sandbox=shared, num_boxes=0)
    with pytest.raises(BadRequest, match=r"^Sokoban: num_boxes must be at least 1, got 0$"):
        await bad.areset()
    assert bad.sandbox is None  # a failed start gives the sandbox back (and ends the session)

    env = make("test:Echo-v0", sandbox=shared)
    try:
        with pytest.raises(BadRequest, match="call reset"):
            await env.astep("x")
        await env.areset()
        with pytest.raises(
            RockError, match="the environment raised RuntimeError: the environment blew up"
        ) as raised:
            await env.astep("boom")
        assert "Traceback" in raised.value.details["remote_traceback"]
        assert (await env.astep("still here"))[0] == "still here"
        with pytest.raises(SandboxFailed, match=r"the environment server .* exited: .*dying now"):
            await env.astep("die")
        with pytest.raises(BadRequest, match="closed"):
            await env.astep("after")
    finally:
        await env.aclose()


async def test_bad_ids_and_arguments_fail_before_any_sandbox_starts(shared: Sandbox) -> None:
    with pytest.raises(NotFound, match="did you mean 'game:Sokoban-v0-easy'"):
        make("game:Sokobann-v0-easy", sandbox=shared)
    with pytest.raises(BadRequest, match="bad arguments"):
        make("game:Sokoban-v0-easy", sandbox=shared, boxes=3)
    with pytest.raises(BadRequest, match="must be JSON values"):
        make("test:Echo-v0", sandbox=shared, greeting=object())
    register("test:Main-v0", type("Local", (EchoEnv,), {"__module__": "__main__"}))
    with pytest.raises(BadRequest, match="defined in the script being run"):
        make("test:Main-v0", sandbox=shared)
    register("test:Missing-v0", "tests.envs.custom_envs:NoSuchEnv")
    with pytest.raises(NotFound, match="cannot import entry point"):
        make("test:Missing-v0", sandbox=shared)
    with pytest.raises(BadRequest, match="sandbox= takes"):
        make("game:Sokoban-v0-easy", sandbox="yes")  # type: ignore[arg-type]
    with pytest.raises(BadRequest, match="cluster= only applies with sandbox="):
        make("game:Sokoban-v0-easy", cluster=shared.cluster)


async def test_a_session_of_the_callers_sandbox_is_all_it_uses(shared: Sandbox) -> None:
    env = make("game:GuessTheNumber-v0-easy", sandbox=shared)
    assert isinstance(env, RemoteEnv)
    await env.areset(seed=1)
    assert env._server is not None
    session = env._server.session
    assert session in (await shared.status()).sessions
    await env.aclose()
    assert session not in (await shared.status()).sessions
    with pytest.raises(SessionNotFound):
        await shared.arun("true", session=session)


async def test_many_envs_share_a_sandbox_in_an_async_vector_env(shared: Sandbox) -> None:
    ids = EASY * 2
    async with AsyncVectorEnv(ids, sandbox=shared) as remote:
        with SyncVectorEnv(ids) as local:
            assert await remote.areset(seed=3) == local.reset(seed=3)
            for turn in range(12):
                actions = [f"\\boxed{{{('up', 'left', 'down', 'right')[turn % 4]}}}"] * len(ids)
                assert await remote.astep(actions) == local.step(actions)


async def test_a_vector_shares_a_server_per_sandbox_and_batches_its_steps(shared: Sandbox) -> None:
    sessions_before = set((await shared.status()).sessions)
    envs = AsyncVectorEnv("test:Echo-v0", 6, sandbox=shared, envs_per_server=4, max_turns=50)
    try:
        assert (await envs.areset(seed=1))[0] == [f"hi {1 + i}" for i in range(6)]
        servers = {env._server for env in envs.envs if isinstance(env, RemoteEnv)}
        assert sorted(len(s.slots) for s in servers if s is not None) == [2, 4]
        opened = set((await shared.status()).sessions) - sessions_before
        assert opened == {s.session for s in servers if s is not None}
        # One env's error is its own; the others took their step.
        with pytest.raises(RockError, match="the environment raised RuntimeError"):
            await envs.astep(["a", "b", "boom", "d", "e\x00f", "g"])
        observations, _, _, _, infos = await envs.astep(["h", "i", "j", "k", "l", "m"])
        assert observations == ["h", "i", "j", "k", "l", "m"]
        assert [info["turn"] for info in infos] == [2] * 6
        with pytest.raises(BadRequest, match="an action is a string, got float"):
            await envs.astep(["a", "b", float("nan"), "d", "e", "f"])  # type: ignore[list-item]
        with pytest.raises(BadRequest, match="above the limit of 8388608 bytes"):
            await envs.astep(["x" * (9 << 20), "b", "c", "d", "e", "f"])
        with pytest.raises(RockError, match=r"result is 1048\d+ bytes as JSON, above the limit"):
            await envs.astep(["y" * (1 << 20), "b", "c", "d", "e", "f"])
        observations, *_ = await envs.astep(["z" * 300_000, "1", "2", "3", "4", "5"])
        assert observations == ["z" * 300_000, "1", "2", "3", "4", "5"]
    finally:
        await envs.aclose()
    assert set((await shared.status()).sessions) == sessions_before


async def test_a_server_dying_mid_batch_fails_its_envs_only(shared: Sandbox) -> None:
    envs = AsyncVectorEnv("test:Echo-v0", 4, sandbox=shared, envs_per_server=2, max_turns=50)
    try:
        await envs.areset(seed=0)
        server = envs.envs[0]._server  # type: ignore[attr-defined]
        mates = [i for i, env in enumerate(envs.envs) if env._server is server]  # type: ignore[attr-defined]
        others = [i for i in range(4) if i not in mates]
        with pytest.raises(SandboxFailed, match=r"the environment server .* exited: .*dying now"):
            await envs.astep(["die", "b", "c", "d"])
        for index in mates:
            with pytest.raises(BadRequest, match="closed"):
                await envs.envs[index].astep("x")
        assert (await envs.astep(["p", "q"], indices=others))[0] == ["p", "q"]
        assert (await envs.areset(seed=5))[0] == [f"hi {5 + i}" for i in range(4)]
        assert (await envs.astep(["r", "s", "t", "u"]))[0] == ["r", "s", "t", "u"]
    finally:
        await envs.aclose()


async def test_a_cancelled_batched_step_leaves_the_vector_usable(shared: Sandbox) -> None:
    envs = AsyncVectorEnv("test:Echo-v0", 3, sandbox=shared, max_turns=50)
    try:
        await envs.areset(seed=0)
        with anyio.move_on_after(0.5) as scope:
            await envs.astep(["nap", "b", "c"])  # the server sleeps 2 s on the first call
        assert scope.cancelled_caught
        with anyio.fail_after(30):
            observations, _, _, _, infos = await envs.astep(["d", "e", "f"])
        assert observations == ["d", "e", "f"] and [i["turn"] for i in infos] == [2, 2, 2]
    finally:
        await envs.aclose()


async def test_new_sandboxes_on_a_cluster_are_deleted_on_close(cluster: Cluster) -> None:
    env = make("game:Hangman-v0-easy", sandbox=True, cluster=cluster)
    await env.areset(seed=2)
    sandbox = env.sandbox
    assert sandbox is not None and sandbox.config.cpus == 0.25
    await env.aclose()
    assert not (await sandbox.status()).is_running


async def test_a_hub_spec_with_an_image_runs_in_a_sandbox(
    cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROCK_HOME", str(tmp_path))
    Hub().register(
        HubSpec(
            name="wordle", env="game:Wordle-v0-easy", image=PY_IMAGE, parameters={"max_turns": 3}
        )
    )
    env = make("hub:wordle", cluster=cluster)
    assert isinstance(env, RemoteEnv) and env.env_id == "hub:wordle"
    try:
        _, info = await env.areset(seed=4)
        assert info["max_turns"] == 3
    finally:
        await env.aclose()
    assert make("hub:wordle", sandbox=False).reset(seed=4)[1]["max_turns"] == 3


def test_the_sync_api_with_a_sandbox_of_its_own(docker_engine: None) -> None:
    env = make("game:Sokoban-v0-easy", sandbox=True)
    chat = ChatEnv(env)
    try:
        messages, _ = chat.reset(seed=42)
        local = make("game:Sokoban-v0-easy")
        observation, info = local.reset(seed=42)
        assert messages == [{"role": "user", "content": f"{observation}\n{info['suffix']}"}]
        messages, reward, *_ = chat.step("\\boxed{up}")
        expected = local.step("\\boxed{up}")
        assert reward == expected[1]
        assert messages[-1]["content"] == f"{expected[0]}\n{expected[4]['suffix']}"
        assert isinstance(env, RemoteEnv) and env.sandbox is not None
        sandbox_id = env.sandbox.sandbox_id
    finally:
        chat.close()
    assert containers_of(sandbox_id) == []


def test_sandbox_envs_run_in_a_trio_loop(docker_engine: None) -> None:
    from rock_core import open_cluster
    from rock_sdk.envs import TaskEnv, TaskSpec

    task = TaskSpec(
        instruction="Say hi.", verifier="true", image=PY_IMAGE, cpus=0.25, memory="256m"
    )

    async def main() -> None:
        async with open_cluster(["local"]) as cluster:
            remote = make("game:Mastermind-v0-easy", sandbox=True, cluster=cluster)
            local = make("game:Mastermind-v0-easy")
            try:
                assert await remote.areset(seed=9) == local.reset(seed=9)
                assert await remote.astep("\\boxed{1 2}") == local.step("\\boxed{1 2}")
            finally:
                await remote.aclose()
            env = TaskEnv(task, cluster=cluster)
            try:
                await env.areset()
                assert (await env.astep("<bash>echo hi</bash>"))[0] == "hi\n"
                assert (await env.astep("<submit/>"))[1] == 1.0
            finally:
                await env.aclose()

    # In a thread of its own: this module's async fixtures keep an asyncio loop in this one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(anyio.run, main, backend="trio").result()


async def cancel_during_make(env: RemoteEnv) -> tuple[Sandbox, str]:
    """Start `env`, cancel it while the server builds the environment: the sandbox it had and
    its server's session."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(env.areset)
        with anyio.fail_after(60):
            while env._server is None or not env._server.running:  # noqa: ASYNC110
                await anyio.sleep(0.05)
        sandbox, session = env.sandbox, env._server.session
        tg.cancel_scope.cancel()
    assert sandbox is not None and env.sandbox is None and env._server is None
    return sandbox, session


async def test_a_start_cancelled_in_a_callers_sandbox_ends_its_session(shared: Sandbox) -> None:
    env = make("test:SlowMake-v0", sandbox=shared)
    assert isinstance(env, RemoteEnv)
    sandbox, session = await cancel_during_make(env)
    assert sandbox is shared
    assert session not in (await shared.status()).sessions
    assert (await shared.status()).is_running  # the caller's sandbox is kept
    running = await shared.execute(["sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '"])
    assert "sleep 120" not in running.stdout  # the server and its work ended with the session


class BookkeepingColdStart(ColdStart):
    """A factory that does async work of its own before deleting, unshielded (as a pool may)."""

    def __init__(self, config: SandboxConfig, cluster: Cluster) -> None:
        super().__init__(config, cluster)
        self.released: list[str] = []

    async def release(self, sandbox: Sandbox) -> None:
        await anyio.lowlevel.checkpoint()
        self.released.append(sandbox.sandbox_id)
        await super().release(sandbox)


@pytest.mark.parametrize("source", ["config", "factory"])
async def test_a_start_cancelled_on_a_cluster_deletes_its_new_sandbox(
    cluster: Cluster, source: str
) -> None:
    factory = BookkeepingColdStart(SandboxConfig(image=PY_IMAGE, memory="256m"), cluster)
    if source == "config":
        env = make("test:SlowMake-v0", sandbox=True, cluster=cluster)
    else:
        env = make("test:SlowMake-v0", sandbox=factory)
    assert isinstance(env, RemoteEnv)
    sandbox, _ = await cancel_during_make(env)
    if source == "factory":
        assert factory.released == [sandbox.sandbox_id]
    # Deleted before the cancelled call returned, not when the cluster exits.
    assert cluster.record(sandbox.sandbox_id).state is SandboxState.DELETED
    assert containers_of(sandbox.sandbox_id) == []
