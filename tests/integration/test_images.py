"""Images on a host, for real: list, warm, prune least recently used, through SDK and CLI.

There is no registry here, so a warm that succeeds proves nothing was pulled. Prune tests work
only on throwaway images this module imports (a unique random layer each) and restrict prune to
them with `only`, so the shared test images are never candidates.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest

from rock_agent._images import NOTE_INTERVAL, ImageUsage, prune_candidates, prune_limit
from rock_core import BadRequest, Cluster, ImageNotFound, open_cluster
from rock_core._images import list_images, prune_images, warm_image
from rock_core._protocol import ImageInfo, PruneImages
from rock_sdk import Sandbox, SandboxConfig

from ..conftest import PY_IMAGE, SH_IMAGE
from .test_cli import rock

pytestmark = pytest.mark.anyio

PREFIX = f"rock-prune-{secrets.token_hex(4)}"
IMAGE_SIZE = 2 << 20  # bytes of random data in each throwaway image


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A usage record of this module's own: agents started meanwhile inherit the variable."""
    folder = tmp_path_factory.mktemp("agent-state")
    old = os.environ.get("ROCK_AGENT_STATE_DIR")
    os.environ["ROCK_AGENT_STATE_DIR"] = str(folder)
    try:
        yield folder
    finally:
        if old is None:
            del os.environ["ROCK_AGENT_STATE_DIR"]
        else:
            os.environ["ROCK_AGENT_STATE_DIR"] = old


@pytest.fixture(scope="module")
async def cluster(docker_engine: None, state_dir: Path) -> AsyncIterator[Cluster]:
    async with open_cluster(["local"]) as c:
        yield c


@pytest.fixture(scope="module")
def throwaway() -> Iterator[list[str]]:
    """Names of the throwaway images made so far; every one is removed at the end."""
    made: list[str] = []
    yield made
    if made:
        subprocess.run(["docker", "rmi", "-f", *made], capture_output=True)


async def make_image(made: list[str], name: str) -> str:
    """``PREFIX/name:1``: the busybox image plus one layer holding a unique random file."""
    reference = f"{PREFIX}/{name}:1"
    payload = Path(f"/tmp/{PREFIX}-{name}.bin")
    payload.write_bytes(os.urandom(IMAGE_SIZE))
    container = f"{PREFIX}-{name}"
    try:
        for argv in (
            ["docker", "create", "--name", container, SH_IMAGE, "true"],
            ["docker", "cp", str(payload), f"{container}:/payload.bin"],
            ["docker", "commit", container, reference],
        ):
            await anyio.run_process(argv)
    finally:
        payload.unlink()
        await anyio.run_process(["docker", "rm", "-f", container], check=False)
    made.append(reference)
    return reference


async def exists(reference: str) -> bool:
    found = await anyio.run_process(["docker", "image", "inspect", reference], check=False)
    return found.returncode == 0


async def images_by_tag(cluster: Cluster) -> dict[str, ImageInfo]:
    (report,) = (await list_images(cluster)).values()
    return {tag: info for info in report.images for tag in info.tags}


async def test_list_reports_size_times_and_disk(cluster: Cluster) -> None:
    reports = await list_images(cluster)
    assert list(reports) == list(cluster.hosts)
    (report,) = reports.values()
    found = {tag: info for info in report.images for tag in info.tags}
    py = found[PY_IMAGE]
    assert py.image_id.startswith("sha256:")
    assert py.size > 100 << 20  # a Debian userland with python
    assert 0 < py.created <= py.last_used <= time.time() + 1
    assert report.total_size >= py.size
    assert report.disk_size > report.total_size
    recent = [info.last_used for info in report.images]
    assert recent == sorted(recent, reverse=True)


async def test_warm_of_a_present_image_is_a_success_without_pulling(cluster: Cluster) -> None:
    before = time.time()
    (info,) = (await warm_image(cluster, SH_IMAGE)).values()
    # No registry is reachable here: success means no pull was tried.
    assert SH_IMAGE in info.tags
    assert info.last_used >= before - 1


async def test_warm_of_a_missing_image_is_image_not_found(cluster: Cluster) -> None:
    missing = f"{PREFIX}/missing:1"
    (host,) = cluster.hosts
    with pytest.raises(
        ImageNotFound,
        match=rf"^host {host}: image '{missing}' is not on this host and could not be pulled: ",
    ):
        await warm_image(cluster, missing)


async def test_last_use_follows_sandbox_starts(cluster: Cluster, throwaway: list[str]) -> None:
    older, newer = await make_image(throwaway, "older"), await make_image(throwaway, "newer")
    await warm_image(cluster, newer)
    found = await images_by_tag(cluster)
    assert found[older].last_used < found[newer].last_used
    async with Sandbox(SandboxConfig(image=older, memory="64m", pull="never"), cluster=cluster):
        found = await images_by_tag(cluster)
        assert found[older].containers == 1
        assert found[older].last_used >= found[newer].last_used  # running: used now
    found = await images_by_tag(cluster)
    # The sandbox is gone; the agent's record of its start keeps the image recent.
    assert found[older].containers == 0
    assert found[older].last_used > found[newer].last_used


async def run_rock(*args: str) -> subprocess.CompletedProcess[str]:
    return await anyio.to_thread.run_sync(lambda: rock(*args))


def unique(info: ImageInfo) -> int:
    return info.size - info.shared_size


async def test_prune_removes_least_recently_used_unused_images_down_to_the_limit(
    cluster: Cluster, throwaway: list[str]
) -> None:
    names = ["in-use", "first", "second", "third", "fourth"]
    made = {name: await make_image(throwaway, f"lru-{name}") for name in names}
    for name in names:  # warm in this order: "in-use" is the least recently used
        await warm_image(cluster, made[name])
    holder = f"{PREFIX}-holder"
    await anyio.run_process(["docker", "create", "--name", holder, made["in-use"], "true"])
    try:
        found = await images_by_tag(cluster)
        (report,) = (await list_images(cluster)).values()
        first, second, third = (found[made[n]] for n in ("first", "second", "third"))
        assert found[made["in-use"]].containers == 1
        assert min(unique(first), unique(second), unique(third)) >= IMAGE_SIZE
        # Removing the two least recently used unused images is enough; one is not.
        limit = report.total_size - unique(first) - unique(second) + unique(third) // 2
        (result,) = (
            await prune_images(cluster, max_bytes=limit, only=[f"{PREFIX}/lru-*"])
        ).values()
    finally:
        await anyio.run_process(["docker", "rm", "-f", holder], check=False)
    assert [info.tags for info in result.removed] == [[made["first"]], [made["second"]]]
    assert result.errors == []
    assert not result.dry_run
    assert result.limit == limit
    assert result.total_after <= limit < result.total_before
    assert result.freed == result.total_before - result.total_after
    assert result.freed >= unique(first) + unique(second) - (64 << 10)
    assert not await exists(made["first"]) and not await exists(made["second"])
    for name in ("in-use", "third", "fourth"):
        assert await exists(made[name]), name
    found = await images_by_tag(cluster)
    assert made["first"] not in found and made["third"] in found


async def test_prune_dry_run_and_percent_limits(cluster: Cluster, throwaway: list[str]) -> None:
    a, b = await make_image(throwaway, "dry-a"), await make_image(throwaway, "dry-b")
    await warm_image(cluster, b)
    (report,) = (await list_images(cluster)).values()
    (everything,) = (
        await prune_images(cluster, max_percent=0, only=[f"{PREFIX}/dry-*"], dry_run=True)
    ).values()
    assert everything.dry_run and everything.limit == 0
    assert [info.tags for info in everything.removed] == [[a], [b]]  # least recently used first
    assert everything.freed == sum(unique(info) for info in everything.removed)
    assert everything.total_after == everything.total_before - everything.freed
    assert await exists(a) and await exists(b)  # a dry run removes nothing
    (nothing,) = (await prune_images(cluster, max_percent=100, dry_run=True)).values()
    assert nothing.limit == report.disk_size
    assert nothing.removed == [] and nothing.freed == 0


async def test_prune_only_takes_images_whose_every_tag_matches(
    cluster: Cluster, throwaway: list[str]
) -> None:
    image = await make_image(throwaway, "two-tags")
    other = f"{PREFIX}-kept/two-tags:1"
    await anyio.run_process(["docker", "tag", image, other])
    throwaway.append(other)
    (result,) = (
        await prune_images(cluster, max_bytes=0, only=[f"{PREFIX}/two-*"], dry_run=True)
    ).values()
    assert result.removed == []
    (result,) = (
        await prune_images(
            cluster, max_bytes=0, only=[f"{PREFIX}/two-*", f"{PREFIX}-kept/*"], dry_run=True
        )
    ).values()
    assert [sorted(info.tags) for info in result.removed] == [sorted([image, other])]


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({}, "^host .*: prune needs exactly one limit: max_bytes or max_percent$"),
        (
            {"max_bytes": 1, "max_percent": 1.0},
            "^host .*: prune needs exactly one limit: max_bytes or max_percent$",
        ),
        (
            {"max_bytes": -1},
            r"^host .*: invalid 'images_prune' request: max_bytes -1: Expected `int` >= 0$",
        ),
        (
            {"max_percent": 101.0},
            r"^host .*: invalid 'images_prune' request: max_percent 101.0: "
            r"Expected `float` <= 100.0$",
        ),
    ],
)
async def test_prune_limit_errors(cluster: Cluster, limits: dict[str, float], message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        await prune_images(cluster, **limits)  # type: ignore[arg-type]


async def test_cli_images_list_warm_and_prune(state_dir: Path, throwaway: list[str]) -> None:
    r = await run_rock("images", "list")
    assert r.returncode == 0, r.stderr
    header, *rows = r.stdout.splitlines()
    assert header.split() == [
        "HOST",
        "IMAGE",
        "ID",
        "SIZE",
        "CREATED",
        "LAST",
        "USED",
        "CONTAINERS",
    ]
    assert any(row.split()[1] == PY_IMAGE for row in rows)
    assert "images take" in rows[-1]

    r = await run_rock("images", "warm", SH_IMAGE)
    assert r.returncode == 0, r.stderr
    assert f": {SH_IMAGE} ready (" in r.stdout

    r = await run_rock("images", "warm", f"{PREFIX}/missing:1")
    assert r.returncode == 125
    assert f"image '{PREFIX}/missing:1' is not on this host and could not be pulled" in r.stderr

    image = await make_image(throwaway, "cli")
    only = f"{PREFIX}/cli*"
    r = await run_rock("images", "prune", "--max-size", "0", "--only", only, "--dry-run")
    assert r.returncode == 0, r.stderr
    assert f"would remove {image} (" in r.stdout
    assert await exists(image)
    r = await run_rock("images", "prune", "--max-size", "0", "--only", only)
    assert r.returncode == 0, r.stderr
    assert f"removed {image} (" in r.stdout
    assert "limit 0B; freed" in r.stdout
    assert not await exists(image)

    r = await run_rock("images", "prune", "--max-size", "lots")
    assert r.returncode != 0
    assert "--max-size 'lots' is not a size" in r.stderr


# ---------------------------------------------------------------------------- sans-IO parts


def test_usage_record_keeps_the_newest_use_and_forgets(tmp_path: Path) -> None:
    usage = ImageUsage(tmp_path / "state")
    assert usage.load() == {}
    usage.update({"sha256:a": 5.0})
    usage.update({"sha256:a": 3.0, "sha256:b": 1.0})
    assert usage.load() == {"sha256:a": 5.0, "sha256:b": 1.0}
    usage.update({}, forget=["sha256:a"])
    assert usage.load() == {"sha256:b": 1.0}
    usage.path.write_text("{not json")
    assert usage.load() == {}
    assert usage.due("python:3.11", 100.0)
    assert not usage.due("python:3.11", 100.0 + NOTE_INTERVAL - 1)
    assert usage.due("python:3.11", 100.0 + NOTE_INTERVAL)


def test_state_dir_follows_the_environment(
    state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROCK_AGENT_STATE_DIR", "/somewhere/else")
    assert ImageUsage().path == Path("/somewhere/else/image-usage.json")


def image(image_id: str, tags: list[str], last_used: float, **fields: int) -> ImageInfo:
    return ImageInfo(image_id=image_id, tags=tags, size=10, last_used=last_used, **fields)


def test_prune_candidates_are_unused_matching_and_least_recent_first() -> None:
    images = [
        image("new", ["s/new:1"], 30.0),
        image("old", ["s/old:1"], 10.0),
        image("used", ["s/used:1"], 1.0, containers=1),
        image("running", ["s/running:1"], 2.0),
        image("shared", ["s/shared:1"], 3.0, shared_size=10),  # frees nothing
        image("mixed", ["s/mixed:1", "keep/mixed:1"], 4.0),
        image("dangling", [], 5.0),
    ]
    assert [i.image_id for i in prune_candidates(images, {"running"}, ["s/*"])] == ["old", "new"]
    assert [i.image_id for i in prune_candidates(images, {"running"}, [])] == [
        "mixed",
        "dangling",
        "old",
        "new",
    ]


def test_percent_limit_needs_the_engine_data_on_this_host() -> None:
    request = PruneImages(id=1, max_percent=10.0)
    assert prune_limit(request, 1000) == 100
    with pytest.raises(BadRequest, match=r"^a limit in percent needs the engine's data folder"):
        prune_limit(request, 0)
