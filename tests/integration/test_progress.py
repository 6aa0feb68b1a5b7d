"""`progress=` callbacks against real Docker: create_many, upload and download, image warm and
pool fill each report monotonic `done`, the right `total` and a final ``done == total``; a
raising callback is logged once and the operation still succeeds; a bad one is refused."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rock_core import BadRequest, ImageNotFound, ProgressCallback
from rock_core._progress import PROGRESS_INTERVAL
from rock_sdk import Progress, Sandbox, SandboxCluster, SandboxConfig

from ..conftest import SH_IMAGE

pytestmark = [pytest.mark.anyio, pytest.mark.docker]

SMALL = SandboxConfig(image=SH_IMAGE, cpus=0.1, memory="64m")
SIZE = 20 << 20  # bytes: a 20 MB transfer


def check_calls(calls: list[Progress], what: str, unit: str, total: int | None) -> None:
    """Monotonic `done`, `total` as expected, and a final call with ``done == total``."""
    assert calls, f"{what}: the callback was never called"
    assert {(p.what, p.unit) for p in calls} == {(what, unit)}
    dones = [p.done for p in calls]
    assert dones == sorted(dones), f"{what}: done went down: {dones}"
    assert [p.elapsed for p in calls] == sorted(p.elapsed for p in calls)
    last = calls[-1]
    assert last.finished and last.done == last.total
    if total is not None:
        assert {p.total for p in calls} == {total}
    assert sum(p.finished for p in calls) == 1, "one final call"


@pytest.fixture(scope="module")
async def holder(sdk: SandboxCluster) -> AsyncIterator[Sandbox]:
    sandbox = await sdk.create_sandbox(SMALL)
    try:
        yield sandbox
    finally:
        await sandbox.delete()


async def test_create_many_reports_each_sandbox(sdk: SandboxCluster) -> None:
    calls: list[Progress] = []
    result = await sdk.create_many(SMALL, 5, progress=calls.append)
    try:
        assert result.ok and len(result.sandboxes) == 5
        check_calls(calls, "create_many", "sandboxes", 5)
        assert calls[0].done == 0
    finally:
        for sandbox in result.sandboxes:
            await sandbox.delete()


def slowly(calls: list[Progress]) -> ProgressCallback:
    """A callback that takes longer than the reporter's interval: each later update is then
    due, however fast the transfer (20 MB may take less than one interval here)."""

    def keep(progress: Progress) -> None:
        calls.append(progress)
        time.sleep(PROGRESS_INTERVAL * 1.2)

    return keep


async def test_upload_and_download_of_20_mb_report_bytes(holder: Sandbox, tmp_path: Path) -> None:
    source = tmp_path / "big"
    source.write_bytes(os.urandom(SIZE))
    sent: list[Progress] = []
    await holder.upload(source, "/tmp/big", progress=slowly(sent))
    check_calls(sent, "upload", "bytes", SIZE)  # the files' bytes, known before the start
    assert len(sent) > 2, "bytes are reported as they go, not only at the end"

    received: list[Progress] = []
    await holder.download("/tmp/big", tmp_path / "back", progress=slowly(received))
    assert len(received) > 2, "bytes are reported as they go, not only at the end"
    assert (tmp_path / "back").read_bytes() == source.read_bytes()
    check_calls(received, "download", "bytes", None)
    # The archive the agent sends: the file, its header and padding.
    assert SIZE <= received[-1].total <= SIZE + 4096  # type: ignore[operator]
    assert all(p.total is None for p in received[:-1]), "no total before the end"


async def test_warm_reports_hosts(sdk: SandboxCluster) -> None:
    calls: list[Progress] = []
    warmed = await sdk.warm_image(SH_IMAGE, progress=calls.append)
    check_calls(calls, "warm", "hosts", len(warmed))
    assert [p.done for p in calls] == [0, 1]


async def test_pool_fill_reports_ready_members(sdk: SandboxCluster) -> None:
    calls: list[Progress] = []
    async with sdk.open_pool(SMALL, min_size=3, session=False) as pool:
        await pool.wait_ready(progress=calls.append)
        assert pool.statistics().ready == 3
    check_calls(calls, "pool fill", "sandboxes", 3)
    assert calls[0].done == 0


async def test_a_pool_that_cannot_fill_raises_its_error_alone(sdk: SandboxCluster) -> None:
    missing = SandboxConfig(image="rock-test/no-such-image:1", pull="never", memory="64m")
    calls: list[Progress] = []
    async with sdk.open_pool(missing, min_size=2, session=False) as pool:
        with pytest.raises(ImageNotFound, match=r"^pool '.*' could not refill: image 'rock-test/"):
            await pool.wait_ready(progress=calls.append)
    assert calls and not any(p.finished for p in calls), "no final call for a failed fill"


async def test_a_raising_callback_is_logged_once_and_the_work_is_done(
    sdk: SandboxCluster, holder: Sandbox, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(progress: Progress) -> None:
        raise RuntimeError(f"bar broke at {progress.done}")

    with caplog.at_level(logging.WARNING, logger="rock_core.progress"):
        result = await sdk.create_many(SMALL, 2, progress=broken)
    try:
        assert result.ok and len(result.sandboxes) == 2
    finally:
        for sandbox in result.sandboxes:
            await sandbox.delete()
    [record] = [r for r in caplog.records if r.name == "rock_core.progress"]
    assert "the progress callback" in record.getMessage()
    assert "create_many goes on without it" in record.getMessage()
    caplog.clear()

    source = tmp_path / "small"
    source.write_bytes(b"x" * 1000)
    with caplog.at_level(logging.WARNING, logger="rock_core.progress"):
        await holder.upload(source, "/tmp/small", progress=broken)
    assert (await holder.read_file("/tmp/small")) == b"x" * 1000
    assert len([r for r in caplog.records if r.name == "rock_core.progress"]) == 1


async def test_a_callback_that_is_not_callable_is_a_bad_request(
    sdk: SandboxCluster, holder: Sandbox, tmp_path: Path
) -> None:
    message = r"progress must be a callable taking a rock_sdk\.Progress, or None, got 42"
    with pytest.raises(BadRequest, match=message):
        await holder.upload(tmp_path, "/tmp/x", progress=42)  # type: ignore[arg-type]
    with pytest.raises(BadRequest, match=message):
        await holder.download("/tmp", tmp_path / "x", progress=42)  # type: ignore[arg-type]
    with pytest.raises(BadRequest, match=message):
        await sdk.warm_image(SH_IMAGE, progress=42)  # type: ignore[arg-type]
    with pytest.raises(
        BadRequest,
        match=r"progress must be True, False, a text stream or a callable taking a "
        r"rock_sdk\.Progress, got 42",
    ):
        await sdk.create_many(SMALL, 1, progress=42)  # type: ignore[arg-type]
    async with sdk.open_pool(SMALL, min_size=0, session=False) as pool:
        with pytest.raises(BadRequest, match=message):
            await pool.wait_ready(progress=42)  # type: ignore[arg-type]
        with pytest.raises(BadRequest, match=r"count must be a whole number >= 0, got 'x'"):
            await pool.wait_ready("x", progress=print)  # type: ignore[arg-type]
