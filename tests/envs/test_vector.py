"""Vector envs: sync, async (asyncio and trio) and process pool; autoreset; selective steps."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from rock_core._errors import BadRequest, NotFound, TransportError
from rock_sdk.envs import (
    AsyncVectorEnv,
    AutoresetMode,
    Env,
    ProcessVectorEnv,
    SyncVectorEnv,
    make,
    register,
    registry,
)
from rock_sdk.envs._env import ResetResult, StepResult

from .players import boxed

SOKOBAN = "game:Sokoban-v0-easy"
MIXED = ["game:Sokoban-v0-easy", "game:Wordle-v0-easy", "game:Sudoku-v0-easy"]
BAD = "\\boxed{?!}"  # unreadable: a format error ends the episode at once


def _actions(count: int, turn: int) -> list[str]:
    return [boxed(("up", "left", "down", "right")[(turn + i) % 4]) for i in range(count)]


# ---- construction and argument checks --------------------------------------------------


def test_built_from_one_id_and_a_count_or_from_a_list() -> None:
    assert SyncVectorEnv(SOKOBAN, 3).env_ids == [SOKOBAN] * 3
    assert SyncVectorEnv(MIXED).env_ids == MIXED
    assert SyncVectorEnv(MIXED, 3).num_envs == 3
    assert SyncVectorEnv(SOKOBAN).num_envs == 1


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        ((MIXED, 2), {}, BadRequest, "num_envs=2 does not match the 3 ids given"),
        (([],), {}, BadRequest, "a vector env needs at least one environment"),
        ((SOKOBAN, 2), {"autoreset_mode": "later"}, BadRequest, "unknown autoreset_mode 'later'"),
        (("game:Sokobann-v0", 2), {}, NotFound, "did you mean 'game:Sokoban-v0'"),
    ],
)
def test_bad_construction_is_refused(
    args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        SyncVectorEnv(*args, **kwargs)


def test_bad_calls_are_refused() -> None:
    envs = SyncVectorEnv(SOKOBAN, 3)
    envs.reset(seed=0)
    with pytest.raises(BadRequest, match="got 2 actions for 3 environments"):
        envs.step(_actions(2, 0))
    with pytest.raises(BadRequest, match="index 3 is out of range for a vector of 3 envs"):
        envs.step(_actions(1, 0), indices=[3])
    with pytest.raises(BadRequest, match=r"indices must not repeat, got \[1, 1\]"):
        envs.step(_actions(2, 0), indices=[1, 1])
    with pytest.raises(BadRequest, match="indices must be integers, got 'a'"):
        envs.step(_actions(1, 0), indices=["a"])  # type: ignore[list-item]
    with pytest.raises(BadRequest, match="got 2 seeds for 3 environments"):
        envs.reset(seed=[1, 2])
    with pytest.raises(BadRequest, match="actions must be a sequence of strings"):
        envs.step("\\boxed{up}")


def test_env_kwargs_reach_every_environment() -> None:
    envs = SyncVectorEnv(SOKOBAN, 2, max_turns=3)
    _, infos = envs.reset(seed=0)
    assert [info["max_turns"] for info in infos] == [3, 3]


# ---- sync ---------------------------------------------------------------------------------


def test_reset_seeds_environment_i_with_seed_plus_i() -> None:
    envs = SyncVectorEnv(MIXED)
    observations, infos = envs.reset(seed=40)
    for index, env_id in enumerate(MIXED):
        assert (observations[index], infos[index]) == make(env_id).reset(seed=40 + index)
    # Resetting a subset keeps each environment's own seed offset.
    observations, infos = envs.reset(seed=40, indices=[2])
    assert (observations, infos) == tuple([x] for x in make(MIXED[2]).reset(seed=42))
    observations, _ = envs.reset(seed=[7, None, 9])
    assert observations[0] == make(MIXED[0]).reset(seed=7)[0]


def test_results_are_plain_lists() -> None:
    envs = SyncVectorEnv(SOKOBAN, 2)
    envs.reset(seed=0)
    observations, rewards, terminated, truncated, infos = envs.step(_actions(2, 0))
    assert all(isinstance(x, str) for x in observations)
    assert all(type(x) is float for x in rewards)
    assert all(type(x) is bool for x in terminated + truncated)
    assert all(isinstance(x, dict) for x in infos)


def test_stepping_a_subset_leaves_the_others_alone() -> None:
    envs = SyncVectorEnv(SOKOBAN, 4)
    envs.reset(seed=0)
    _, _, terminated, _, infos = envs.step([BAD, boxed("up")], indices=[3, 1])
    assert terminated == [True, False]  # results come back in the order asked
    assert [info["outcome"] for info in infos] == ["reset", infos[1]["outcome"]]
    assert infos[1]["turn"] == 1
    turns = [env.turn for env in envs.envs]  # type: ignore[attr-defined]
    assert turns == [0, 1, 0, 0]


def test_same_step_autoreset_reports_the_new_episode_and_the_final_one() -> None:
    envs = SyncVectorEnv(SOKOBAN, 2)
    _, before = envs.reset(seed=0)
    observations, rewards, terminated, truncated, infos = envs.step([BAD, boxed("up")])
    assert (rewards[0], terminated[0], truncated[0]) == (-0.1, True, False)
    assert observations[0].startswith("You are solving the Sokoban puzzle")
    assert "could not be read as a move" in infos[0]["final_obs"]
    assert infos[0]["final_info"]["outcome"] == "format_error"
    assert infos[0]["outcome"] == "reset" and infos[0]["turn"] == 0
    assert infos[0]["suffix"] != before[0]["suffix"]  # a new level, not the seeded one
    assert "final_obs" not in infos[1]
    # The fresh episode is playable right away.
    assert envs.step([boxed("up")], indices=[0])[4][0]["turn"] == 1


def test_next_step_autoreset_resets_on_the_following_step() -> None:
    envs = SyncVectorEnv(SOKOBAN, 2, autoreset_mode=AutoresetMode.NEXT_STEP)
    envs.reset(seed=0)
    observations, rewards, terminated, _, infos = envs.step([BAD, boxed("up")])
    assert (rewards[0], terminated[0]) == (-0.1, True)
    assert "could not be read as a move" in observations[0]
    assert "final_obs" not in infos[0]
    observations, rewards, terminated, truncated, infos = envs.step([boxed("up"), boxed("up")])
    assert (rewards[0], terminated[0], truncated[0]) == (0.0, False, False)
    assert observations[0].startswith("You are solving the Sokoban puzzle")
    assert infos[0]["outcome"] == "reset" and infos[1]["turn"] == 2
    assert envs.step([boxed("up")], indices=[0])[4][0]["turn"] == 1


def test_autoreset_continues_each_environments_random_stream() -> None:
    def trajectory(envs: SyncVectorEnv) -> list[Any]:
        out: list[Any] = [envs.reset(seed=5)]
        for turn in range(6):
            out.append(envs.step([BAD if turn % 2 else a for a in _actions(3, turn)]))
        return out

    first, second = trajectory(SyncVectorEnv(SOKOBAN, 3)), trajectory(SyncVectorEnv(SOKOBAN, 3))
    assert first == second
    # The autoreset episodes are new levels, not the seeded one again.
    assert first[2][4][0]["suffix"] != first[0][1][0]["suffix"]


def test_truncation_triggers_autoreset_too() -> None:
    envs = SyncVectorEnv(SOKOBAN, 1, max_turns=2)
    envs.reset(seed=0)
    envs.step([boxed("up")])
    _, rewards, terminated, truncated, infos = envs.step([boxed("up")])
    assert (terminated[0], truncated[0]) == (False, True)
    assert infos[0]["final_info"]["outcome"] == "truncated"
    # The reward is the partial credit: the share of boxes shown on targets at the end.
    assert rewards[0] == infos[0]["final_info"]["suffix"].count("√") / 2


def test_sync_context_manager_closes_and_async_twins_work() -> None:
    with SyncVectorEnv(SOKOBAN, 2) as envs:
        observations, _ = anyio.run(envs.areset, 0)
        assert observations == envs.reset(seed=0)[0]
        envs.step([boxed("up")] * 2)
    # Closed games refuse to go on.
    for env in envs.envs:
        with pytest.raises(BadRequest, match="no episode in progress"):
            env.step(boxed("up"))


# ---- async --------------------------------------------------------------------------------


class RendezvousEnv(Env):
    """Each astep waits until every env of the group is inside astep: only concurrency ends it."""

    arrived = 0
    expected = 0
    everyone: anyio.Event | None = None

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.fail = fail

    def reset(
        self, seed: int | None = None, *, options: dict[str, Any] | None = None
    ) -> ResetResult:
        self._reseed(seed)
        return "ready", {}

    def step(self, action: str) -> StepResult:
        raise AssertionError("the async vector env must use astep")

    async def astep(self, action: str) -> StepResult:
        cls = type(self)
        assert cls.everyone is not None
        cls.arrived += 1
        if cls.arrived == cls.expected:
            cls.everyone.set()
        await cls.everyone.wait()
        if self.fail:
            raise BadRequest(f"refusing {action}")
        return action.upper(), 1.0, False, False, {}


@pytest.fixture
def rendezvous() -> Iterator[str]:
    register("test:Rendezvous-v0", RendezvousEnv)
    register("test:RendezvousFailing-v0", RendezvousEnv, fail=True)
    yield "test:Rendezvous-v0"
    registry._specs.pop("test:Rendezvous-v0")
    registry._specs.pop("test:RendezvousFailing-v0")


@pytest.mark.anyio
async def test_async_vector_steps_all_envs_concurrently(rendezvous: str) -> None:
    RendezvousEnv.arrived, RendezvousEnv.expected = 0, 8
    RendezvousEnv.everyone = anyio.Event()
    async with AsyncVectorEnv(rendezvous, 8) as envs:
        await envs.areset(seed=0)
        with anyio.fail_after(5):  # a sequential vector would wait here forever
            observations, rewards, *_ = await envs.astep([f"a{i}" for i in range(8)])
    assert observations == [f"A{i}" for i in range(8)]
    assert rewards == [1.0] * 8


@pytest.mark.anyio
async def test_async_vector_raises_the_first_error_itself(rendezvous: str) -> None:
    RendezvousEnv.arrived, RendezvousEnv.expected = 0, 3
    RendezvousEnv.everyone = anyio.Event()
    ids = [rendezvous, "test:RendezvousFailing-v0", "test:RendezvousFailing-v0"]
    envs = AsyncVectorEnv(ids)
    await envs.areset()
    with anyio.fail_after(5), pytest.raises(BadRequest, match=r"^refusing b$"):
        await envs.astep(["a", "b", "c"])


@pytest.mark.anyio
async def test_async_vector_mixes_waiting_and_computing_envs(rendezvous: str) -> None:
    RendezvousEnv.arrived, RendezvousEnv.expected = 0, 2
    RendezvousEnv.everyone = anyio.Event()
    envs = AsyncVectorEnv([rendezvous, SOKOBAN, rendezvous])
    observations, _ = await envs.areset(seed=1)
    assert observations[0] == observations[2] == "ready"
    with anyio.fail_after(5):
        observations, rewards, *_ = await envs.astep(["x", BAD, "y"])
    assert (observations[0], observations[2]) == ("X", "Y")
    assert rewards == [1.0, -0.1, 1.0]


@pytest.mark.anyio
async def test_async_vector_matches_the_sync_one() -> None:
    sync = SyncVectorEnv(MIXED, autoreset_mode="next_step")
    envs = AsyncVectorEnv(MIXED, autoreset_mode="next_step")
    assert await envs.areset(seed=3) == sync.reset(seed=3)
    for turn in range(4):
        actions = [BAD if turn == 1 else a for a in _actions(3, turn)]
        assert await envs.astep(actions) == sync.step(actions)
    assert await envs.astep([BAD], indices=[1]) == sync.step([BAD], indices=[1])
    await envs.aclose()


# ---- process pool ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessVectorEnv]:
    with ProcessVectorEnv(MIXED * 2, num_workers=2) as envs:
        yield envs


def test_process_pool_matches_the_sync_vector(pool: ProcessVectorEnv) -> None:
    sync = SyncVectorEnv(MIXED * 2)
    assert pool.num_workers == 2
    assert pool.reset(seed=9) == sync.reset(seed=9)
    for turn in range(3):
        actions = [BAD if turn == 1 and i % 2 else a for i, a in enumerate(_actions(6, turn))]
        assert pool.step(actions) == sync.step(actions)
    assert pool.step([BAD, boxed("up")], indices=[4, 0]) == sync.step(
        [BAD, boxed("up")], indices=[4, 0]
    )


def test_process_pool_passes_worker_errors_through(pool: ProcessVectorEnv) -> None:
    pool.reset(seed=0)
    with pytest.raises(BadRequest, match="index 6 is out of range"):
        pool.step([boxed("up")], indices=[6])
    fresh = ProcessVectorEnv(SOKOBAN, 2, num_workers=1)
    try:
        with pytest.raises(BadRequest, match=r"Sokoban: no episode in progress; call reset\(\)"):
            fresh.step(_actions(2, 0))
        # The pipes stay in step after an error.
        assert len(fresh.reset(seed=1)[0]) == 2
    finally:
        fresh.close()


@pytest.mark.anyio
async def test_process_pool_async_twins(pool: ProcessVectorEnv) -> None:
    observations, _ = await pool.areset(seed=2)
    assert observations == SyncVectorEnv(MIXED * 2).reset(seed=2)[0]
    _, rewards, *_ = await pool.astep([BAD], indices=[5])
    assert rewards == [-0.1]


def test_process_pool_shuts_down_its_workers() -> None:
    with ProcessVectorEnv(SOKOBAN, 3, num_workers=2, context="spawn") as envs:
        envs.reset(seed=0)
        processes = list(envs._procs)
        assert all(process.is_alive() for process in processes)
    assert not any(process.is_alive() for process in processes)
    assert [process.exitcode for process in processes] == [0, 0]
    envs.close()  # closing twice is fine
    with pytest.raises(BadRequest, match="this ProcessVectorEnv is closed"):
        envs.reset()


def test_process_pool_reports_a_dead_worker() -> None:
    envs = ProcessVectorEnv(SOKOBAN, 2, num_workers=2)
    try:
        envs.reset(seed=0)
        victim = envs._procs[1]
        assert victim.pid is not None
        os.kill(victim.pid, 9)
        victim.join(5)
        with pytest.raises(TransportError, match="environment worker 1 is gone"):
            envs.step(_actions(2, 0))
        assert not envs._procs[0].is_alive()  # the whole pool was shut down
    finally:
        envs.close()


def test_process_pool_refuses_bad_setups() -> None:
    with pytest.raises(BadRequest, match="start method 'fork' is not usable here"):
        ProcessVectorEnv(SOKOBAN, 1, context="fork")
    with pytest.raises(BadRequest, match="num_workers must be at least 1, got 0"):
        ProcessVectorEnv(SOKOBAN, 1, num_workers=0)
    # An environment that cannot be built in the worker fails the constructor.
    with pytest.raises(BadRequest, match="Sokoban: num_boxes must be at least 1, got 0"):
        ProcessVectorEnv(SOKOBAN, 2, num_workers=1, num_boxes=0)
    with pytest.raises(
        BadRequest, match="specs and arguments to the workers, and they must pickle"
    ):
        ProcessVectorEnv(SOKOBAN, 2, num_workers=1, max_turns=lambda: 3)
