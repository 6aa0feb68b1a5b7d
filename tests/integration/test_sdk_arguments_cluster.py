"""SDK arguments (see `_sdk_arguments`): sandbox configs, `Sandbox()`, the SDK cluster, pools
and `open_cluster` options given bad arguments raise a typed `RockError`; nothing is sent that
the agent would refuse."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager

import anyio
import pytest

from rock_sdk import (
    BadRequest,
    NotFound,
    RockError,
    Sandbox,
    SandboxCluster,
    SandboxConfig,
    SandboxNotFound,
    SandboxState,
    open_cluster,
)

from ._sdk_arguments import SMALL, Call, bad_arguments, invalid, refused_and_still_works

pytestmark = pytest.mark.anyio


async def pool(sdk: SandboxCluster, **kwargs: object) -> None:
    async with sdk.open_pool(SMALL, **kwargs):
        pass


async def enter(manager: AbstractAsyncContextManager[object]) -> None:
    async with manager:
        pass


def sync(make: Callable[[], object]) -> Awaitable[object]:
    async def call() -> object:
        return make()

    return call()


# (what, call, error class, message); "{host}" stands for the host's id.
CASES: list[tuple[str, Call, type[RockError], str]] = [
    # ---------------------------------------------------------------- configs and Sandbox()
    (
        "config pids str",
        lambda *_: sync(lambda: Sandbox(SandboxConfig(pids="12"))),
        BadRequest,
        "invalid sandbox config: pids '12': Expected `int`, got `str`",
    ),
    (
        "config memory float",
        lambda *_: sync(lambda: Sandbox(SandboxConfig(memory=1.5))),
        BadRequest,
        "memory must be a size such as '1g' or a number of bytes, got 1.5",
    ),
    (
        "config cpus str",
        lambda *_: sync(lambda: Sandbox(SandboxConfig(cpus="2"))),
        BadRequest,
        "invalid sandbox config: cpus '2': Expected `float`, got `str`",
    ),
    (
        "config cpus nan",
        lambda *_: sync(lambda: Sandbox(SandboxConfig(cpus=math.nan))),
        BadRequest,
        "invalid sandbox config: cpus nan: Expected `float` >= 0.01",
    ),
    (
        "config labels None",
        lambda *_: sync(lambda: Sandbox(SandboxConfig(labels=None))),
        BadRequest,
        "invalid sandbox config: labels None: Expected `object`, got `None`",
    ),
    (
        "config env int",
        lambda *_: sync(lambda: Sandbox(SandboxConfig(env={"A": 1}))),
        BadRequest,
        "invalid sandbox config: env[...]: Expected `str`, got `int`",
    ),
    (
        "config image None",
        lambda *_: sync(lambda: Sandbox(SandboxConfig(image=None))),
        BadRequest,
        "invalid sandbox config: image None: Expected `str`, got `None`",
    ),
    (
        "config sandbox_id int",
        lambda *_: sync(lambda: Sandbox(SandboxConfig(sandbox_id=123))),
        BadRequest,
        "invalid sandbox config: sandbox_id 123: Expected `str | null`, got `int`",
    ),
    (
        "config startup_timeout",
        lambda *_: sync(lambda: Sandbox(SandboxConfig(startup_timeout=-1))),
        BadRequest,
        "startup_timeout must be a positive number of seconds, or None to wait without a limit,"
        " got -1",
    ),
    (
        "Sandbox config str",
        lambda *_: sync(lambda: Sandbox("x")),
        BadRequest,
        "config must be a SandboxConfig or None, got 'x'",
    ),
    (
        "Sandbox cluster str",
        lambda *_: sync(lambda: Sandbox(cluster="x")),
        BadRequest,
        "cluster must be a cluster (open_cluster) or None, got 'x'",
    ),
    (
        "Sandbox sandbox_id int",
        lambda _, sdk: Sandbox(SMALL, cluster=sdk, sandbox_id=123).start(),
        BadRequest,
        invalid("create", "sandbox_id 123: Expected `str`, got `int`"),
    ),
    # ---------------------------------------------------------------- the SDK cluster
    (
        "create_sandbox config str",
        lambda _, sdk: sdk.create_sandbox("x"),
        BadRequest,
        "config must be a SandboxConfig or None, got 'x'",
    ),
    (
        "create_sandbox id with a slash",
        lambda _, sdk: sdk.create_sandbox(SMALL, sandbox_id="x/../y"),
        BadRequest,
        invalid(
            "create",
            "sandbox_id 'x/../y': must be 1 to 100 letters, digits, '-', '_' or '.', starting"
            " with a letter or digit",
        ),
    ),
    (
        "attach cluster str",
        lambda *_: sync(lambda: Sandbox.attach("x", "sb-1")),
        BadRequest,
        "cluster must be a cluster (open_cluster), got 'x'",
    ),
    (
        "sandbox int",
        lambda _, sdk: sync(lambda: sdk.sandbox(123)),
        SandboxNotFound,
        "no sandbox 123 in this cluster",
    ),
    (
        "drain_host unknown",
        lambda _, sdk: sync(lambda: sdk.drain_host("nowhere")),
        NotFound,
        "no host 'nowhere' in this cluster (hosts: ['{host}'])",
    ),
    (
        "drain_host flag str",
        lambda _, sdk: sync(lambda: sdk.drain_host("{host}", "no")),
        BadRequest,
        "draining must be True or False, got 'no'",
    ),
    (
        "create_many n -1",
        lambda _, sdk: sdk.create_many(SMALL, -1),
        BadRequest,
        "n must be a whole number >= 0, got -1",
    ),
    (
        "create_many n str",
        lambda _, sdk: sdk.create_many(SMALL, "3"),
        BadRequest,
        "n must be a whole number >= 0, got '3'",
    ),
    (
        "create_many concurrency",
        lambda _, sdk: sdk.create_many(SMALL, 1, concurrency="x"),
        BadRequest,
        "concurrency must be a whole number >= 1, got 'x'",
    ),
    (
        "create_many on_progress",
        lambda _, sdk: sdk.create_many(SMALL, 1, on_progress=5),
        BadRequest,
        "on_progress must be a callable taking a CreateProgress, or None, got 5",
    ),
    (
        "create_many progress",
        lambda _, sdk: sdk.create_many(SMALL, 1, progress="yes"),
        BadRequest,
        "progress must be True, False, a text stream or a callable taking a rock_sdk.Progress, "
        "got 'yes'",
    ),
    (
        "create_many config str",
        lambda _, sdk: sdk.create_many("x", 1),
        BadRequest,
        "config must be a list such as [SandboxConfig(...), ...], got 'x'",
    ),
    (
        "open_pool min_size -1",
        lambda _, sdk: pool(sdk, min_size=-1),
        BadRequest,
        "min_size must be a whole number >= 0, got -1",
    ),
    (
        "open_pool max_size below min_size",
        lambda _, sdk: pool(sdk, min_size=2, max_size=1),
        BadRequest,
        "max_size must be >= min_size and >= 1, got min_size=2, max_size=1",
    ),
    (
        "open_pool min_size str",
        lambda _, sdk: pool(sdk, min_size="1"),
        BadRequest,
        "min_size must be a whole number >= 0, got '1'",
    ),
    (
        "open_pool shrink_after nan",
        lambda _, sdk: pool(sdk, shrink_after=math.nan),
        BadRequest,
        "shrink_after must be a positive, finite number of seconds, got nan",
    ),
    (
        "open_pool prepare",
        lambda _, sdk: pool(sdk, prepare=5),
        BadRequest,
        "prepare must be a callable taking a Sandbox (async), or None, got 5",
    ),
    (
        "open_pool session",
        lambda _, sdk: pool(sdk, session="yes"),
        BadRequest,
        "session must be True or False, got 'yes'",
    ),
    (
        "warm_image int",
        lambda _, sdk: sdk.warm_image(123),
        BadRequest,
        "host {host}: " + invalid("image_warm", "image 123: Expected `str`, got `int`"),
    ),
    (
        "prune_images max_percent nan",
        lambda _, sdk: sdk.prune_images(max_percent=math.nan, dry_run=True),
        BadRequest,
        "host {host}: " + invalid("images_prune", "max_percent nan: Expected `float` >= 0.0"),
    ),
]


@bad_arguments(CASES)
async def test_a_bad_argument_is_a_typed_error_and_the_sandbox_still_works(
    target: Sandbox, sdk: SandboxCluster, call: Call, error: type[RockError], message: str
) -> None:
    await refused_and_still_works(target, sdk, call, error, message)


async def test_pool_arguments(sdk: SandboxCluster) -> None:
    async with sdk.open_pool(SMALL, min_size=1, name="args-pool") as warm:
        sandbox = await warm.acquire()
        cases: list[tuple[Callable[[], Awaitable[object]], str]] = [
            (lambda: warm.release(123), "release takes a Sandbox or a sandbox id, got 123"),
            (lambda: warm.release(sandbox, reset="yes"), "reset must be True or False, got 'yes'"),
            (lambda: warm.wait_ready("1"), "count must be a whole number >= 0, got '1'"),
            (lambda: enter(warm.sandbox(reset="no")), "reset must be True or False, got 'no'"),
            (
                lambda: warm.wait_ready(5),
                "pool 'args-pool' holds at most 1 sandboxes; cannot wait for 5 ready",
            ),
        ]
        for call, message in cases:
            with anyio.fail_after(30), pytest.raises(BadRequest) as info:
                await call()
            assert str(info.value) == message
        assert (await sandbox.arun("echo pooled")).output == "pooled\n"
        await warm.release(sandbox)
    assert sandbox.state is SandboxState.DELETED


async def test_open_cluster_options_through_the_sdk(docker_engine: None) -> None:
    cases: list[tuple[dict[str, object], str]] = [
        (
            {"lease": 2},
            "lease (2 s) must be longer than heartbeat + heartbeat_timeout (5.0 + 10.0 = 15 s):"
            " a live link can be silent that long, and an agent drops a link silent for longer"
            " than its lease",
        ),
        ({"lease": True}, "lease must be a positive, finite number of seconds, got True"),
        (
            {"heartbeat": math.inf},
            "heartbeat must be a positive, finite number of seconds, got inf",
        ),
        (
            {"queue_timeout": "60"},
            "queue_timeout must be a positive number of seconds, or None to wait without a"
            " limit, got '60'",
        ),
        ({"max_starts": 0}, "max_starts must be a whole number >= 1, got 0"),
    ]
    for kwargs, message in cases:
        with pytest.raises(BadRequest) as info:
            async with open_cluster(**kwargs):
                pass
        assert str(info.value) == message
