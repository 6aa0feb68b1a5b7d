"""Batched vector steps over env servers, with the server run in this process (no Docker).

`FakeSandbox` stands in for a `Sandbox`: its interactive process hands each line to the real
server code (`_remote_server.answer`) and gives the reply lines back to `expect`, so what is
tested is the caller's side: grouping per server, lockstep plans, errors per env, a server
that dies, a reply that never comes, a cancelled caller. The same paths run against real
sandboxes in ``tests/integration/test_remote_env.py``.
"""

from __future__ import annotations

import math
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from rock_core import BadRequest, RockError, SandboxFailed, TimedOut
from rock_sdk._results import ExpectMatch
from rock_sdk.envs import AsyncVectorEnv, SyncVectorEnv, register
from rock_sdk.envs import _remote as remote_module
from rock_sdk.envs._remote import RemoteEnv
from rock_sdk.envs._remote_server import Server, answer

from .custom_envs import EchoEnv

pytestmark = pytest.mark.anyio

MIXED = ["game:Sokoban-v0-easy", "game:Wordle-v0-easy", "game:Sudoku-v0-easy"]


class Died(BaseException):
    """Raised by `MortalEcho` to end the fake server's process."""


class MortalEcho(EchoEnv):
    """`EchoEnv` whose ``die`` ends the (fake) server process instead of this one."""

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if action == "die":
            raise Died
        if action == "odd":
            return ("three", "items", "only")  # type: ignore[return-value]
        return super().step(action)


register("test:BatchEcho-v0", MortalEcho, max_turns=1000)


class FakeProcess:
    """An env server in this process behind `InteractiveProcess`'s sendline and expect."""

    def __init__(self, sandbox: FakeSandbox) -> None:
        self.sandbox = sandbox
        self.server = Server()
        self.replies: list[str] = []
        self.dead = False
        self.output = anyio.Event()

    async def sendline(self, line: str) -> None:
        await anyio.lowlevel.checkpoint()
        self.sandbox.lines.append(line)
        if not self.dead:
            try:
                reply, _ = answer(self.server, line)
            except Died:
                self.dead = True
            else:
                self.replies.extend(part + "\n" for part in reply.split("\n") if part)
        self.output.set()

    async def expect(self, pattern: str, timeout: float = 30.0) -> ExpectMatch:
        if self.sandbox.hang:
            self.sandbox.hang = False
            await anyio.sleep_forever()
        with anyio.move_on_after(timeout):
            while not (self.replies or self.dead):
                self.output = anyio.Event()
                await self.output.wait()
            if self.replies:
                return ExpectMatch(index=0, before="", match=self.replies.pop(0))
            return ExpectMatch(index=-1, before="dying now", match="")
        raise TimedOut(f"no output matched {[pattern]!r} within {timeout:g} s")


class Ran:
    ok = True


class FakeSandbox:
    """What `EnvServer` uses of a `Sandbox`, with servers run by `FakeProcess`."""

    def __init__(self, name: str = "fake") -> None:
        self.sandbox_id = name
        self.lines: list[str] = []
        self.processes: list[FakeProcess] = []
        self.sessions: set[str] = set()
        self.hang = False

    async def create_session(self, session: str) -> str:
        self.sessions.add(session)
        return session

    async def close_session(self, session: str) -> None:
        self.sessions.remove(session)

    async def arun(self, cmd: str, session: str, **options: Any) -> Ran:
        return Ran()

    async def write_file(self, path: str, data: bytes) -> None:
        raise AssertionError("arun said the bundle is there")

    async def start_interactive(self, cmd: str, session: str) -> FakeProcess:
        process = FakeProcess(self)
        self.processes.append(process)
        return process

    async def start(self) -> FakeSandbox:
        return self

    def batches(self) -> int:
        return sum('"op": "batch"' in line for line in self.lines)


class Lend:
    """A `SandboxFactory` lending fake sandboxes in turn."""

    def __init__(self, *sandboxes: FakeSandbox) -> None:
        self.sandboxes = sandboxes
        self.lent = 0

    async def acquire(self) -> Any:
        self.lent += 1
        return self.sandboxes[(self.lent - 1) % len(self.sandboxes)]

    async def release(self, sandbox: Any) -> None:
        return None


def actions(count: int, turn: int) -> list[str]:
    return [f"\\boxed{{{('up', 'left', 'down', 'right')[(turn + i) % 4]}}}" for i in range(count)]


@pytest.mark.parametrize("mode", ["same_step", "next_step"])
async def test_a_step_is_one_batch_per_server_and_plays_as_in_process(mode: str) -> None:
    sandbox = FakeSandbox()
    ids = MIXED * 4
    envs = AsyncVectorEnv(ids, sandbox=Lend(sandbox), envs_per_server=5, autoreset_mode=mode)
    local = SyncVectorEnv(ids, autoreset_mode=mode)
    assert await envs.areset(seed=4) == local.reset(seed=4)
    assert len(sandbox.processes) == math.ceil(len(ids) / 5) == len(sandbox.sessions)
    servers = {env._server for env in envs.envs if isinstance(env, RemoteEnv)}
    assert len(servers) == 3 and all(len(s.slots) <= 5 for s in servers if s)
    before, ended = sandbox.batches(), 0
    for turn in range(30):
        expected = local.step(actions(len(ids), turn))
        assert await envs.astep(actions(len(ids), turn)) == expected
        ended += any(expected[2]) or any(expected[3])
    # One batch per server per step, and one more per server for autoresets (same_step).
    assert 3 * 30 <= sandbox.batches() - before <= 3 * 30 + 3 * ended * (mode == "same_step")
    assert ended > 0
    await envs.aclose()
    assert sandbox.sessions == set()


async def test_envs_per_server_one_is_a_round_trip_per_env() -> None:
    sandbox = FakeSandbox()
    envs = AsyncVectorEnv("test:BatchEcho-v0", 4, sandbox=Lend(sandbox), envs_per_server=1)
    await envs.areset(seed=0)
    before = sandbox.batches()
    await envs.astep(["a", "b", "c", "d"])
    assert len(sandbox.processes) == 4 and sandbox.batches() - before == 4
    await envs.aclose()


@pytest.mark.parametrize("bad", [0, -1, 2.5, "4", True, None])
def test_envs_per_server_must_be_a_whole_number(bad: Any) -> None:
    with pytest.raises(BadRequest, match="envs per server must be a whole number of at least 1"):
        AsyncVectorEnv("test:BatchEcho-v0", 2, sandbox=Lend(FakeSandbox()), envs_per_server=bad)


async def test_errors_stay_with_their_env() -> None:
    sandbox = FakeSandbox()
    envs = AsyncVectorEnv("test:BatchEcho-v0", 4, sandbox=Lend(sandbox))
    await envs.areset(seed=0)
    with pytest.raises(RockError, match="the environment raised RuntimeError") as raised:
        await envs.astep(["a", "boom", "c", 7])  # type: ignore[list-item]
    assert "Traceback" in raised.value.details["remote_traceback"]
    with pytest.raises(BadRequest, match=r"an action is a string, got int"):
        await envs.astep(["a", "b", "c", 7])  # type: ignore[list-item]
    with pytest.raises(RockError, match=r"the environment's step returned \['three', 'items', "
                       r"'only'\], which is not what a step returns"):  # fmt: skip
        await envs.astep(["a", "odd", "c", "d"])
    observations, _, _, _, infos = await envs.astep(["w", "x\x00y", "\u00e9", "z"])
    assert observations == ["w", "x\x00y", "\u00e9", "z"]
    # Every env but the last took each step it was given (the int never left).
    assert [info["turn"] for info in infos] == [4, 3, 4, 2]
    with pytest.raises(BadRequest, match=r"a seed is an int or None, got nan"):
        await envs.areset(seed=[0, 1, float("nan"), 3])  # type: ignore[list-item]
    with pytest.raises(BadRequest, match=r"cannot be sent: Out of range float values"):
        await envs.envs[0].areset(options={"x": float("inf")})
    await envs.aclose()


async def test_a_call_too_long_for_one_line_is_refused_and_batches_are_split(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rock_sdk.envs import _env_server

    monkeypatch.setattr(remote_module, "MAX_LINE_BYTES", 400)
    monkeypatch.setattr(_env_server, "MAX_LINE_BYTES", 400)
    sandbox = FakeSandbox()
    envs = AsyncVectorEnv("test:BatchEcho-v0", 4, sandbox=Lend(sandbox))
    await envs.areset(seed=0)
    with pytest.raises(
        BadRequest, match=r"the step is 5\d\d bytes as JSON, above the limit of 400"
    ):
        await envs.astep(["a" * 500, "b", "c", "d"])
    before = sandbox.batches()
    observations, *_ = await envs.astep(["a" * 200, "b" * 200, "c" * 200, "d"])
    assert observations == ["a" * 200, "b" * 200, "c" * 200, "d"]
    assert sandbox.batches() - before == 3  # no line over the limit
    await envs.aclose()


async def test_a_server_that_dies_fails_its_envs_until_they_reset() -> None:
    envs = AsyncVectorEnv("test:BatchEcho-v0", 4, sandbox=Lend(FakeSandbox("a"), FakeSandbox("b")))
    await envs.areset(seed=0)
    dead = envs.envs[0].sandbox  # type: ignore[attr-defined]
    mates = [i for i, env in enumerate(envs.envs) if env.sandbox is dead]  # type: ignore[attr-defined]
    others = [i for i in range(4) if i not in mates]
    assert len(mates) == len(others) == 2
    with pytest.raises(SandboxFailed, match=r"^test:BatchEcho-v0: the environment server in "
                       rf"sandbox {dead.sandbox_id} exited: dying now$"):  # fmt: skip
        await envs.astep(["die", "b", "c", "d"])
    for index in mates:  # both envs of the dead server are closed now
        with pytest.raises(BadRequest, match=r"closed \(its server exited; reset\(\) starts"):
            await envs.envs[index].astep("x")
    assert (await envs.astep(["a", "b"], indices=others))[0] == ["a", "b"]  # the others go on
    observations, _ = await envs.areset(seed=1)  # a new server for the envs of the dead one
    assert observations == ["hello 1", "hello 2", "hello 3", "hello 4"]
    assert len(dead.processes) == 2 and len(dead.sessions) == 1
    assert (await envs.astep(["e", "f", "g", "h"]))[0] == ["e", "f", "g", "h"]
    await envs.aclose()
    assert dead.sessions == set()


async def test_no_reply_in_time_fails_the_batch_and_the_server_goes_on() -> None:
    sandbox = FakeSandbox()
    envs = AsyncVectorEnv("test:BatchEcho-v0", 3, sandbox=Lend(sandbox))
    for env in envs.envs:
        env.step_timeout = 0.2  # type: ignore[attr-defined]
    await envs.areset(seed=0)
    process = sandbox.processes[0]
    process.replies.clear()

    async def lose_replies(line: str) -> None:
        sandbox.lines.append(line)  # read, never answered

    original = process.sendline
    process.sendline = lose_replies  # type: ignore[method-assign]
    with pytest.raises(TimedOut, match="no output matched"):
        await envs.astep(["a", "b", "c"])
    process.sendline = original  # type: ignore[method-assign]
    assert (await envs.astep(["d", "e", "f"]))[0] == ["d", "e", "f"]
    await envs.aclose()


async def test_a_cancelled_step_leaves_the_envs_usable() -> None:
    sandbox = FakeSandbox()
    envs = AsyncVectorEnv("test:BatchEcho-v0", 3, sandbox=Lend(sandbox))
    await envs.areset(seed=0)
    sandbox.hang = True
    with anyio.move_on_after(0.2) as scope:
        await envs.astep(["a", "b", "c"])
    assert scope.cancelled_caught
    # The cancelled batch's reply comes first and is skipped by its number.
    observations, _, _, _, infos = await envs.astep(["d", "e", "f"])
    assert observations == ["d", "e", "f"] and [i["turn"] for i in infos] == [2, 2, 2]
    await envs.aclose()


async def test_an_env_busy_with_a_call_of_its_own_is_refused_in_the_batch() -> None:
    sandbox = FakeSandbox()
    envs = AsyncVectorEnv("test:BatchEcho-v0", 3, sandbox=Lend(sandbox))
    await envs.areset(seed=0)
    sandbox.hang = True
    refused: list[Exception] = []

    async def vector_step() -> None:
        try:
            await envs.astep(["a", "b", "c"])
        except BadRequest as exc:
            refused.append(exc)

    async with anyio.create_task_group() as group:
        alone = anyio.CancelScope()

        async def own_call() -> None:
            with alone:
                await envs.envs[1].astep("alone")

        group.start_soon(own_call)
        await anyio.sleep(0.05)
        group.start_soon(vector_step)  # envs 0 and 2 wait for the server; env 1 is refused
        await anyio.sleep(0.05)
        alone.cancel()
    assert [str(exc) for exc in refused] == [
        "another call on this RemoteEnv is in progress; an environment takes one call at a time"
    ]
    observations, _, _, _, infos = await envs.astep(["d", "e", "f"])
    assert observations == ["d", "e", "f"] and [i["turn"] for i in infos] == [2, 2, 2]
    await envs.aclose()


@pytest.mark.parametrize(
    ("lines", "error"),
    [
        (['{"ok": true, "id": null, "result": [1, 2]}'], "answered a batch with {'ok': True"),
        (
            ['{"ok": true, "id": null, "more": true, "result": [{"ok": true}]}', '{"ok": false}'],
            "ended a reply in parts with {'ok': False}",
        ),
    ],
)
async def test_a_garbled_batch_reply_is_our_error_for_each_env(
    lines: list[str], error: str
) -> None:
    sandbox = FakeSandbox()
    envs = AsyncVectorEnv("test:BatchEcho-v0", 2, sandbox=Lend(sandbox))
    for env in envs.envs:
        env.step_timeout = 5  # type: ignore[attr-defined]  (a lost reply fails fast)
    await envs.areset(seed=0)
    process = sandbox.processes[0]

    async def garble(line: str) -> None:
        sandbox.lines.append(line)
        process.replies.extend(f"\x1erock-env {reply}\n" for reply in lines)
        process.output.set()

    original = process.sendline
    process.sendline = garble  # type: ignore[method-assign]
    with pytest.raises(RockError) as raised:
        await envs.astep(["a", "b"])
    assert type(raised.value) is RockError and error in raised.value.message
    process.sendline = original  # type: ignore[method-assign]
    assert (await envs.astep(["c", "d"]))[0] == ["c", "d"]
    await envs.aclose()


async def test_a_batch_refuses_an_env_that_became_busy_and_a_plan_that_fails_at_once() -> None:
    from rock_sdk.envs._vector_batch import run_batched

    sandbox = FakeSandbox()
    envs = AsyncVectorEnv("test:BatchEcho-v0", 3, sandbox=Lend(sandbox))
    await envs.areset(seed=0)
    server = envs.envs[0]._batch_server()
    assert server is not None

    def broken() -> Any:
        raise RuntimeError("no first call")
        yield  # a generator, as a plan is

    envs.envs[1]._busy = True  # a call of its own began after the vector looked
    jobs = [
        (0, envs._slots[0].step("a"), envs.envs[0]),
        (1, envs._slots[1].step("b"), envs.envs[1]),
        (2, broken(), envs.envs[2]),
    ]
    results: dict[int, Any] = {}
    errors: dict[int, Exception] = {}
    await run_batched(server, jobs, results, errors)
    assert list(results) == [0]
    assert isinstance(errors[1], BadRequest) and "in progress" in str(errors[1])
    assert isinstance(errors[2], RuntimeError)
    # The busy env's own call still holds it; the others are free again.
    assert [env._busy for env in envs.envs] == [False, True, False]
    envs.envs[1]._busy = False
    observations, _, _, _, _ = await envs.astep(["d", "e", "f"])
    assert observations == ["d", "e", "f"]
    await envs.aclose()
