"""Messages for images, commit, stats and ports: wire forms, defaults and round trips.

A port forward's conversation with a scripted agent runs over real local TCP, so it is in
`tests/integration/test_port_forward.py`.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
import pytest

from rock_core import BadRequest
from rock_core import _protocol as p

NEW_REQUESTS = [
    p.ListImages,
    p.WarmImage,
    p.PruneImages,
    p.CommitSandbox,
    p.ReadStats,
    p.ForwardPort,
]
NEW_REPLIES = [p.ImageListReply, p.ImageReply, p.PruneReply, p.StatsReply, p.ForwardReply]


def test_new_messages_are_in_the_unions_of_the_side_that_receives_them() -> None:
    client_side = set(p.ClientMessage.__args__)
    agent_side = set(p.AgentMessage.__args__)
    assert set(NEW_REQUESTS) <= client_side and not set(NEW_REQUESTS) & agent_side
    assert set(NEW_REPLIES) <= agent_side and not set(NEW_REPLIES) & client_side


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"op": "images_list", "id": 1}, p.ListImages(id=1)),
        (
            {"op": "images_prune", "id": 2},
            p.PruneImages(id=2, max_bytes=None, max_percent=None, only=[], dry_run=False),
        ),
        (
            {"op": "images_prune", "id": 3, "max_percent": 12.5},
            p.PruneImages(id=3, max_percent=12.5),
        ),
        (
            {"op": "commit", "id": 4, "sandbox_id": "sb", "image": "me/x:1"},
            p.CommitSandbox(
                id=4, sandbox_id="sb", image="me/x:1", message="", changes=[], pause=True
            ),
        ),
        (
            {"op": "forward", "id": 5, "sandbox_id": "sb", "port": 8000},
            p.ForwardPort(id=5, sandbox_id="sb", port=8000, address="127.0.0.1"),
        ),
        ({"op": "stats", "id": 6, "sandbox_id": "sb"}, p.ReadStats(id=6, sandbox_id="sb")),
    ],
)
def test_short_requests_decode_with_defaults(raw: dict[str, Any], expected: p.Message) -> None:
    assert p.decode_client_message(msgspec.msgpack.encode(raw)) == expected


def test_short_replies_decode_with_defaults() -> None:
    raw = {"op": "images", "id": 1, "report": {"images": [{"image_id": "sha256:1"}]}}
    reply = p.decode_agent_message(msgspec.msgpack.encode(raw))
    assert reply == p.ImageListReply(
        id=1,
        report=p.ImageReport(
            images=[
                p.ImageInfo(
                    image_id="sha256:1",
                    tags=[],
                    size=0,
                    shared_size=0,
                    created=0.0,
                    last_used=0.0,
                    containers=0,
                )
            ],
            total_size=0,
            disk_size=0,
        ),
    )
    raw = {
        "op": "stats_result",
        "id": 2,
        "stats": {
            "sandbox_id": "sb",
            "time": 1.0,
            "cpu_percent": 50.0,
            "cpu_seconds": 2.0,
            "interval": 1.0,
        },
    }
    stats = p.decode_agent_message(msgspec.msgpack.encode(raw))
    assert isinstance(stats, p.StatsReply)
    assert (stats.stats.memory, stats.stats.pids_limit, stats.stats.online_cpus) == (0, 0, 0)


@pytest.mark.parametrize(
    ("raw", "missing"),
    [
        ({"op": "forward", "id": 1, "sandbox_id": "sb"}, "port"),
        ({"op": "commit", "id": 1, "sandbox_id": "sb"}, "image"),
        ({"op": "image_warm", "id": 1}, "image"),
        ({"op": "stats", "id": 1}, "sandbox_id"),
    ],
)
def test_requests_without_a_required_field_are_bad_requests_on_their_id(
    raw: dict[str, Any], missing: str
) -> None:
    rejected = p.decode_client_message(msgspec.msgpack.encode(raw))
    assert isinstance(rejected, p.Rejected) and rejected.id == 1
    assert isinstance(rejected.error, BadRequest)
    assert re.match(rf"^invalid '{raw['op']}' request: .*`{missing}`", rejected.error.message)


@pytest.mark.parametrize(
    "message",
    [
        p.PruneImages(id=1, max_percent=99.5, only=["a/*", "b:?"]),
        p.CommitSandbox(
            id=2, sandbox_id="sb", image="reg:5000/me/x:v1", changes=['CMD ["sh"]'], pause=False
        ),
        p.ForwardPort(id=3, sandbox_id="sb", port=65535, address="::1"),
        p.PruneReply(
            id=4,
            result=p.PruneResult(limit=0, total_before=5, total_after=5, freed=0, errors=["é"]),
        ),
        p.ImageReply(
            id=5, image=p.ImageInfo(image_id="x", tags=["a:1", "b:2"], size=1 << 40, containers=3)
        ),
        p.ForwardReply(id=6, bytes_in=0, bytes_out=(1 << 53) + 1),
    ],
    ids=lambda m: type(m).__name__,
)
def test_populated_messages_round_trip(message: p.Message) -> None:
    decode = (
        p.decode_client_message
        if type(message) in p.ClientMessage.__args__
        else p.decode_agent_message
    )
    assert decode(p.encode(message)) == message
