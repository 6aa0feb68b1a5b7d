"""`PoolOptions`: validated once, with a `BadRequest` naming the option; taken by
`rock_core.open_pool` and forwarded by the SDK; default pool names."""

from __future__ import annotations

import dataclasses
import math

import pytest

import rock_sdk
from rock_core import (
    AlreadyExists,
    BadRequest,
    Cluster,
    SandboxRecord,
    SandboxSpec,
    Scheduler,
    open_pool,
)
from rock_core._pool import POOL_LABEL, default_pool_name
from rock_core._pool_options import PoolOptions
from rock_core.testing import open_fake_cluster
from rock_sdk._pool import open_pool as rock_sdk_open_pool
from tests.core.virtual import anyio_backend  # noqa: F401  (virtual time, both backends)

from .pool_kit import SPEC, GiB

pytestmark = pytest.mark.anyio


async def test_bad_settings_are_refused() -> None:
    async with open_fake_cluster(1) as cluster:
        cases: list[tuple[dict[str, object], str]] = [
            ({"min_size": -1}, r"^min_size must be a whole number >= 0, got -1$"),
            ({"min_size": "1"}, r"^min_size must be a whole number >= 0, got '1'$"),
            ({"max_size": 1.5}, r"^max_size must be a whole number >= 1, got 1.5$"),
            (
                {"min_size": 3, "max_size": 2},
                r"^max_size must be >= min_size and >= 1, got min_size=3, max_size=2$",
            ),
            ({"min_size": 0, "max_size": 0}, r"^max_size must be a whole number >= 1, got 0$"),
            ({"refill_concurrency": 0}, r"^refill_concurrency must be a whole number >= 1, got 0$"),
            (
                {"shrink_after": 0},
                r"^shrink_after must be a positive, finite number of seconds, got 0$",
            ),
            (
                {"shrink_after": math.nan},
                r"^shrink_after must be a positive, finite number of seconds, got nan$",
            ),
            (
                {"prepare_timeout": -1.0},
                r"^prepare_timeout must be a positive, finite number of seconds, got -1.0$",
            ),
            ({"prepare": 5}, r"^prepare must be an async callable or None, got 5$"),
            ({"name": "bad name"}, r"^pool name 'bad name' must be 1-63 letters, digits"),
            ({"name": "-x"}, r"^pool name '-x' must be 1-63 letters"),
        ]
        for kwargs, message in cases:
            with pytest.raises(BadRequest, match=message):
                async with open_pool(cluster, SPEC, **kwargs):  # type: ignore[arg-type]
                    pass
        labelled = SandboxSpec(image="img:1", memory=GiB, labels={POOL_LABEL: "other"})
        with pytest.raises(
            BadRequest, match=r"^the spec's label rock.pool='other' differs from the pool's name"
        ):
            async with open_pool(cluster, labelled, name="mine"):
                pass
        async with open_pool(cluster, SPEC, name="one") as one:
            with pytest.raises(BadRequest, match=r"^count must be a whole number >= 0, got '2'$"):
                await one.wait_ready("2")  # type: ignore[arg-type]
            with pytest.raises(
                AlreadyExists, match=r"^a pool named 'one' is already open in this cluster$"
            ):
                async with open_pool(cluster, SPEC, name="one"):
                    pass
        assert cluster.statistics().pools == ()
    closed = Cluster("nobody", Scheduler())
    with pytest.raises(BadRequest, match=r"^pools need an open cluster"):
        async with open_pool(closed, SPEC):
            pass


def test_default_names_are_stable_and_label_safe() -> None:
    name = default_pool_name(SandboxSpec(image="registry:5000/team/py:3.11", memory=GiB))
    assert name.startswith("registry-5000-team-py-3.11-")
    assert name == default_pool_name(SandboxSpec(image="registry:5000/team/py:3.11", memory=GiB))
    assert name != default_pool_name(SandboxSpec(image="registry:5000/team/py:3.11", cpus=2))


# ------------------------------------------------------------------ bulk create (rock_sdk)


def test_options_are_frozen_validated_once_and_changed_by_keyword() -> None:
    options = PoolOptions(min_size=2, shrink_after=5)
    assert (options.min_size, options.max_size, options.most) == (2, None, 2)
    assert options.shrink_after == 5.0 and isinstance(options.shrink_after, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.min_size = 3  # type: ignore[misc]
    bigger = options.with_changes(max_size=6, name="warm")
    assert (bigger.min_size, bigger.most, bigger.name) == (2, 6, "warm")
    assert options.with_changes() is options
    assert PoolOptions(min_size=0).most == 1
    with pytest.raises(
        BadRequest,
        match=r"^unknown pool option 'min': the options are min_size, max_size, name, "
        r"refill_concurrency, refill_queue_timeout, shrink_after, prepare, prepare_timeout$",
    ):
        options.with_changes(min=3)
    with pytest.raises(
        BadRequest, match=r"^max_size must be >= min_size and >= 1, got min_size=2, max_size=1$"
    ):
        options.with_changes(max_size=1)
    with pytest.raises(
        BadRequest,
        match=r"^refill_queue_timeout must be a positive, finite number of seconds, got 'x'$",
    ):
        PoolOptions(refill_queue_timeout="x")  # type: ignore[arg-type]


async def test_open_pool_takes_options_and_keyword_changes_to_them() -> None:
    async with open_fake_cluster(1, cpus=16, memory=64 * GiB) as cluster:
        options = PoolOptions(min_size=2, max_size=4, name="base")
        async with open_pool(cluster, SPEC, options, name="changed") as pool:
            assert pool.options == options.with_changes(name="changed")
            await pool.wait_ready()
            stats = pool.statistics()
            assert (stats.name, stats.min_size, stats.max_size, stats.ready) == (
                "changed",
                2,
                4,
                2,
            )
        with pytest.raises(BadRequest, match=r"^options must be a PoolOptions or None, got 3$"):
            async with open_pool(cluster, SPEC, 3):  # type: ignore[arg-type]
                pass
        with pytest.raises(BadRequest, match=r"^unknown pool option 'size': the options are "):
            async with open_pool(cluster, SPEC, size=3):
                pass


async def test_the_sdk_forwards_options_and_keywords_to_the_core() -> None:
    config = rock_sdk.SandboxConfig(image="img:1", cpus=0.5, memory="1g")
    async with open_fake_cluster(1, cpus=16, memory=64 * GiB) as cluster:
        sdk = rock_sdk.SandboxCluster(cluster)
        options = PoolOptions(min_size=2, refill_queue_timeout=7.0)
        async with sdk.open_pool(config, options, name="sdk", session=False) as pool:
            core = pool.core
            assert (core.name, core.min_size, core.options.refill_queue_timeout) == ("sdk", 2, 7.0)
            assert core.options.prepare is None  # no session, no prepare: nothing to run
            await pool.wait_ready()
        async with rock_sdk_open_pool(cluster, config, session=False, min_size=0) as pool:
            assert pool.core.min_size == 0
        with pytest.raises(BadRequest, match=r"^options.prepare takes a record; give rock_sdk"):
            async with sdk.open_pool(config, PoolOptions(prepare=_prepare_record)):
                pass
        with pytest.raises(BadRequest, match=r"^min_size must be a whole number >= 0, got -1$"):
            async with sdk.open_pool(config, min_size=-1):
                pass


async def _prepare_record(record: SandboxRecord) -> None:
    pass
