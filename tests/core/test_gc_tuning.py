"""The garbage collector's tuning while clusters are open, and the option that turns it off."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from rock_core import BadRequest, ClusterOptions, open_cluster
from rock_core._gc_tuning import TUNED_THRESHOLDS, tuned_clusters, tuned_gc
from rock_core.testing import FakeAgent, FakeAgentConnector
from tests.core.virtual import anyio_backend  # noqa: F401  (virtual time, both backends)

PROGRAM_THRESHOLDS = (900, 11, 12)  # what the "embedding program" set before any cluster


@pytest.fixture(autouse=True)
def program_thresholds() -> Iterator[None]:
    saved = gc.get_threshold()
    gc.set_threshold(*PROGRAM_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*saved)


def test_tuning_lasts_while_a_cluster_is_open_then_restores() -> None:
    with tuned_gc():
        assert gc.get_threshold() == TUNED_THRESHOLDS
        assert tuned_clusters() == 1
    assert gc.get_threshold() == PROGRAM_THRESHOLDS
    assert tuned_clusters() == 0


def test_nested_clusters_restore_when_the_last_closes() -> None:
    with tuned_gc():
        with tuned_gc():
            assert tuned_clusters() == 2
        assert gc.get_threshold() == TUNED_THRESHOLDS  # the outer cluster is still open
    assert gc.get_threshold() == PROGRAM_THRESHOLDS


def test_thresholds_the_program_sets_meanwhile_are_kept() -> None:
    with tuned_gc():
        gc.set_threshold(5_000, 20, 20)
    assert gc.get_threshold() == (5_000, 20, 20)


def test_opting_out_leaves_the_collector_alone() -> None:
    with tuned_gc(enabled=False):
        assert gc.get_threshold() == PROGRAM_THRESHOLDS
        assert tuned_clusters() == 0


def test_a_failing_block_still_restores() -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with tuned_gc():
            raise RuntimeError("boom")
    assert gc.get_threshold() == PROGRAM_THRESHOLDS
    assert tuned_clusters() == 0


@pytest.mark.anyio
@pytest.mark.parametrize("tuning", [True, False])
async def test_open_cluster_tunes_unless_told_not_to(tuning: bool) -> None:
    hosts = [FakeAgentConnector(FakeAgent())]
    async with open_cluster(hosts, owner="gc-owner", gc_tuning=tuning):
        expected = TUNED_THRESHOLDS if tuning else PROGRAM_THRESHOLDS
        assert gc.get_threshold() == expected
    assert gc.get_threshold() == PROGRAM_THRESHOLDS


def test_gc_tuning_must_be_a_bool() -> None:
    with pytest.raises(BadRequest, match=r"gc_tuning must be True or False, got 'no'"):
        ClusterOptions(gc_tuning="no")  # type: ignore[arg-type]
