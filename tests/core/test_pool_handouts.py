"""Hand-outs a holder deletes itself (never released) are forgotten by the pool: in a long run
the pool's bookkeeping stays as small as what is really out, and reading its statistics
changes nothing."""

from __future__ import annotations

import pytest

from rock_core import open_pool
from rock_core._pool import PRUNE_AT_LEAST
from rock_core.testing import open_fake_cluster
from tests.core.pool_kit import SPEC, GiB
from tests.core.virtual import anyio_backend  # noqa: F401  (virtual time, both backends)

pytestmark = pytest.mark.anyio


async def test_hand_outs_deleted_by_their_holders_are_forgotten_as_the_run_goes_on() -> None:
    async with open_fake_cluster(1, cpus=64, memory=256 * GiB) as cluster:
        async with open_pool(cluster, SPEC, min_size=2, name="churn") as pool:
            for _ in range(10 * PRUNE_AT_LEAST):
                record = await pool.acquire()
                await cluster.delete_sandbox(record.sandbox_id)  # never released
                assert pool.statistics().handed_out == 0
            assert len(pool._out) <= 2 * PRUNE_AT_LEAST


async def test_statistics_count_live_hand_outs_without_changing_the_pool() -> None:
    async with open_fake_cluster(1, cpus=16, memory=64 * GiB) as cluster:
        async with open_pool(cluster, SPEC, min_size=1, name="count") as pool:
            kept, gone = await pool.acquire(), await pool.acquire()
            await cluster.delete_sandbox(gone.sandbox_id)
            before = dict(pool._out)
            assert pool.statistics().handed_out == 1
            assert pool._out == before  # a getter is only a getter
            await pool.release(kept.sandbox_id)
