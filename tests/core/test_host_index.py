"""The ledger's ordered host index against a plain scan of every open host: the same choice
after any sequence of changes, for both policies and several demand shapes."""

from __future__ import annotations

import random

import pytest

from rock_core._capacity import NANO, Host, Ledger, Resources
from rock_core._host_index import MAX_SHAPES, REBUILD_FACTOR, rank

GiB = 1 << 30
IMAGES = ["a", "b", ""]
SHAPES = [(c * NANO // 2, m * GiB, image) for c in (0, 1, 3) for m in (0, 1, 4) for image in IMAGES]


def scan(ledger: Ledger, cpus: int, memory: int, image: str) -> Host | None:
    """The reference: rank every open host, take the lowest."""
    ranked = [
        (placed, host)
        for host in ledger.open.values()
        if (placed := rank(host, cpus, memory, image, ledger.spread)) is not None
    ]
    return min(ranked, key=lambda pair: pair[0])[1] if ranked else None


def step(ledger: Ledger, rng: random.Random, serial: list[int]) -> None:
    """One random change to the ledger."""
    hosts = list(ledger.hosts)
    placements = list(ledger.placements)
    roll = rng.random()
    if roll < 0.05 or not hosts:
        serial[0] += 1
        capacity = Resources(
            cpus=rng.choice([0, 2, 4, 8]),
            memory=rng.choice([0, 4, 16]) * GiB,
            sandboxes=rng.choice([0, 0, 3]),
        )
        ledger.add_host(f"h{serial[0]:03d}", capacity, rng.choice([1, 2, 8]), rng.sample(IMAGES, 1))
    elif roll < 0.08:
        ledger.remove_host(rng.choice(hosts))
    elif roll < 0.12:
        ledger.drain(rng.choice(hosts), rng.random() < 0.5)
    elif roll < 0.15:
        ledger.set_images(rng.choice(hosts), rng.sample(IMAGES, rng.randint(0, 2)))
    elif roll < 0.55:
        cpus, memory, image = rng.choice(SHAPES)
        host = ledger.choose(cpus, memory, image)
        assert host is scan(ledger, cpus, memory, image)
        if host is not None:
            serial[0] += 1
            ledger.place(f"r{serial[0]}", host, cpus, memory, image)
    elif roll < 0.8 and placements:
        placement = ledger.placements[rng.choice(placements)]
        if placement.starting:
            ledger.started(placement)
    elif placements:
        ledger.unplace(rng.choice(placements))


@pytest.mark.parametrize("spread", [True, False])
@pytest.mark.parametrize("seed", range(12))
def test_the_index_chooses_what_a_scan_of_every_host_chooses(spread: bool, seed: int) -> None:
    rng = random.Random(seed)
    ledger = Ledger(spread)
    serial = [0]
    for _ in range(1500):
        step(ledger, rng, serial)
        cpus, memory, image = rng.choice(SHAPES)
        assert ledger.choose(cpus, memory, image) is scan(ledger, cpus, memory, image)


def test_more_shapes_than_the_index_keeps_still_choose_right() -> None:
    ledger = Ledger(spread=True)
    for index in range(5):
        ledger.add_host(f"h{index}", Resources(cpus=64, memory=64 * GiB), 64, ["a"])
    shapes = [(n * NANO, GiB, "a") for n in range(1, 2 * MAX_SHAPES + 2)]
    for round_ in range(3):
        for number, (cpus, memory, image) in enumerate(shapes):
            host = ledger.choose(cpus, memory, image)
            assert host is scan(ledger, cpus, memory, image)
            if host is not None and (number + round_) % 3 == 0:
                ledger.place(f"r{round_}-{number}", host, cpus, memory, image)


def test_no_open_host_fits_gives_none() -> None:
    ledger = Ledger(spread=True)
    ledger.add_host("h0", Resources(cpus=1, memory=GiB), 1, [])
    assert ledger.choose(2 * NANO, GiB, "") is None
    first = ledger.choose(NANO, GiB, "")
    assert first is not None and first.host_id == "h0"
    ledger.place("r1", first, NANO, GiB, "")  # its one start slot is taken: it closes
    assert ledger.choose(0, 0, "") is None


def test_could_ever_hold_follows_hosts_joining_and_leaving() -> None:
    ledger = Ledger(spread=True)
    ledger.add_host("small", Resources(cpus=2, memory=4 * GiB), 1, [])
    assert not ledger.could_ever_hold(4 * NANO, GiB)
    ledger.add_host("big", Resources(cpus=8, memory=4 * GiB), 1, [])
    assert ledger.could_ever_hold(4 * NANO, GiB)
    ledger.drain("big", True)  # draining or not: it could hold it once empty
    assert ledger.could_ever_hold(4 * NANO, GiB)
    ledger.remove_host("big")
    assert not ledger.could_ever_hold(4 * NANO, GiB)
    assert ledger.could_ever_hold(2 * NANO, 4 * GiB)


def test_a_shape_not_placed_lately_keeps_a_bounded_heap() -> None:
    ledger = Ledger(spread=True)
    for index in range(10):
        ledger.add_host(f"h{index}", Resources(cpus=1000, memory=1000 * GiB), 1000, [])
    rare = (8 * NANO, GiB, "")
    assert ledger.choose(*rare) is not None  # indexed once, then never asked again
    for number in range(2000):
        host = ledger.choose(NANO, GiB, "")
        assert host is not None
        ledger.place(f"r{number}", host, NANO, GiB, "")
        ledger.started(ledger.placements[f"r{number}"])
    assert ledger.index.sizes()[rare] <= REBUILD_FACTOR * 10 + 64 + 1
    assert ledger.choose(*rare) is scan(ledger, *rare)
