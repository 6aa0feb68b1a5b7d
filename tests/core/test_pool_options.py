"""`PoolOptions`: validated once, with a `BadRequest` naming the option; taken by
`rock_core.open_pool` and forwarded by the SDK; default pool names."""

from __future__ import annotations

import math

import pytest

from rock_core import (
    AlreadyExists,
    BadRequest,
    Cluster,
    SandboxSpec,
    Scheduler,
    open_pool,
)
from rock_core._pool import POOL_LABEL, default_pool_name
from rock_core.testing import open_fake_cluster
from tests.core.virtual import anyio_backend  # noqa: F401  (virtual time, on trio)

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
