"""Uploads, downloads and whole-file calls at their edges: abandoned archive streams, special
files, symlinks, local errors, wrong types, kernel folders, a dead agent, large transfers.

Every `fail_after` here is a hang detector (generous on purpose), never a timing assertion.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import secrets
import signal
import socket
import subprocess
import tarfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import anyio
import pytest

from rock_core import Cluster
from rock_core._connection import raise_for_reply
from rock_core._errors import ProtocolError
from rock_core._protocol import Download, Reply, StreamData, TransferReply, Upload
from rock_core._tar import END, TarScanner, dir_header, file_header, padding, single_file
from rock_sdk import BadRequest, FileNotFound, Sandbox, SandboxConfig, TransportError
from rock_sdk import open_cluster as open_sdk_cluster
from rock_sdk._transfer import download, upload
from rock_sdk._unpack import unpack

from ..conftest import PY_IMAGE, SH_IMAGE
from .test_leases import SocketAgent

pytestmark = pytest.mark.anyio

HANG = 30  # seconds: far beyond any healthy call, so only a hang trips it
KERNEL = "which holds the kernel's files: the file API would see only the image's copy"


async def own_sandbox(cluster: Cluster, image: str) -> AsyncIterator[Sandbox]:
    # Half a cpu: it must fit beside the module's `sandbox` on a 2-core host.
    sb = Sandbox(SandboxConfig(image=image, memory="256m", cpus=0.5), cluster=cluster)
    await sb.start()
    try:
        yield sb
    finally:
        await sb.delete()


@pytest.fixture
async def fresh(cluster: Cluster) -> AsyncIterator[Sandbox]:
    """A sandbox of its own, for tests that may leave it wedged."""
    async for sb in own_sandbox(cluster, SH_IMAGE):
        yield sb


@pytest.fixture
async def fresh_py(cluster: Cluster) -> AsyncIterator[Sandbox]:
    """A python sandbox of its own."""
    async for sb in own_sandbox(cluster, PY_IMAGE):
        yield sb


async def once(condition: Callable[[], bool]) -> None:
    """Return once `condition()` holds (polled: it watches counters, not events)."""
    while True:
        if condition():
            return
        await anyio.sleep(0.01)


async def assert_usable(sb: Sandbox) -> None:
    """Every kind of call on the sandbox completes: inspect, exec, archive, remove."""
    with anyio.fail_after(HANG):
        assert (await sb.status()).info is not None
    with anyio.fail_after(HANG):
        assert (await sb.execute(["echo", "alive"])).stdout == "alive\n"
    with anyio.fail_after(HANG):
        await sb.write_file("/tmp/after", b"after")
        assert await sb.read_file("/tmp/after") == b"after"
    with anyio.fail_after(HANG):
        await sb.delete()


# ---------------------------------------------------------------- 1. archive streams are closed


async def test_a_read_over_the_limit_leaves_the_sandbox_usable(fresh: Sandbox) -> None:
    await fresh.arun("dd if=/dev/zero of=/tmp/big bs=1M count=100 2>/dev/null")
    with pytest.raises(BadRequest, match=r"^/tmp/big is larger than 64 MiB; use download\(\)$"):
        await fresh.read_file("/tmp/big")
    await assert_usable(fresh)


async def test_a_download_cancelled_after_its_first_chunks_leaves_the_sandbox_usable(
    fresh: Sandbox,
) -> None:
    await fresh.arun("dd if=/dev/zero of=/tmp/big bs=1M count=100 2>/dev/null")
    conn = fresh.cluster.connection(fresh.sandbox_id)
    request = Download(id=conn.next_id(), sandbox_id=fresh.sandbox_id, path="/tmp/big")
    chunks = 0
    with anyio.fail_after(HANG):
        async with conn.open_request(request) as answers:
            await conn.grant(request.id, 2)
            async for message in answers:
                assert isinstance(message, StreamData), message
                chunks += 1
                if chunks == 2:
                    break  # leaving the block cancels the download on the agent
    assert chunks == 2
    await assert_usable(fresh)


async def test_an_sdk_download_cancelled_midway_leaves_the_sandbox_usable(
    fresh: Sandbox, tmp_path: Path
) -> None:
    await fresh.arun("dd if=/dev/zero of=/tmp/big bs=1M count=200 2>/dev/null")
    conn = fresh.cluster.connection(fresh.sandbox_id)
    start = conn._channel.bytes_received
    with anyio.fail_after(HANG), anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:

            async def cancel_once_streaming() -> None:
                await once(lambda: conn._channel.bytes_received >= start + (4 << 20))
                scope.cancel()

            tg.start_soon(cancel_once_streaming)
            await fresh.download("/tmp/big", tmp_path / "big")
    assert scope.cancelled_caught
    assert not (tmp_path / "big").exists()
    await assert_usable(fresh)


# ---------------------------------------------------------------- 2. special files, cancellation


def special_tree(tmp_path: Path) -> tuple[Path, Iterator[socket.socket]]:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a.txt").write_text("alpha\n")
    os.mkfifo(tree / "pipe")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tree / "sock"))
    return tree, iter([sock])


async def test_fifos_and_sockets_in_an_upload_are_skipped_and_reported(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    tree, socks = special_tree(tmp_path)
    with anyio.fail_after(HANG):
        stat = await sandbox.upload(tree, "/up/special")
    assert stat.skipped == [f"{tree}/pipe: a FIFO, skipped", f"{tree}/sock: a socket, skipped"]
    assert (await sandbox.arun("ls -A /up/special")).output == "a.txt\n"
    for sock in socks:
        sock.close()


async def test_an_upload_of_a_fifo_itself_is_a_bad_request(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    os.mkfifo(tmp_path / "pipe")
    with anyio.fail_after(HANG), pytest.raises(BadRequest, match="pipe is a FIFO, not a file or"):
        await sandbox.upload(tmp_path / "pipe", "/up/pipe")


async def test_an_upload_can_be_cancelled_midway(fresh: Sandbox, tmp_path: Path) -> None:
    big = tmp_path / "big"
    with big.open("wb") as f:
        f.truncate(1 << 30)  # sparse: 1 GiB of zeros that take no disk here
    conn = fresh.cluster.connection(fresh.sandbox_id)
    start = conn._channel.bytes_sent
    with anyio.fail_after(HANG), anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:

            async def cancel_once_streaming() -> None:
                await once(lambda: conn._channel.bytes_sent >= start + (8 << 20))
                scope.cancel()

            tg.start_soon(cancel_once_streaming)
            await fresh.upload(big, "/tmp/big")
    assert scope.cancelled_caught
    await assert_usable(fresh)


# ---------------------------------------------------------------- 3. symlinks in uploads


async def test_symlinks_are_uploaded_as_symlinks(sandbox: Sandbox, tmp_path: Path) -> None:
    tree = tmp_path / "links"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("alpha\n")
    (tree / "sub" / "b.txt").write_text("beta\n")
    os.symlink("a.txt", tree / "to_file")
    os.symlink("sub", tree / "to_dir")
    os.symlink("/etc/hostname", tree / "absolute")
    os.symlink("nowhere", tree / "dangling")
    os.symlink("loop", tree / "loop")  # a link to itself
    os.symlink("..", tree / "sub" / "up")  # a loop through a folder
    with anyio.fail_after(HANG):
        stat = await sandbox.upload(tree, "/up/links")
    assert stat.is_dir and stat.skipped == []
    script = (
        "cd /up/links && for f in to_file to_dir absolute dangling loop sub/up; "
        'do printf "%s -> %s\\n" $f "$(readlink $f)"; done; cat to_file to_dir/b.txt; '
        "find . -type f | sort"
    )
    assert (await sandbox.arun(script)).output == (
        "to_file -> a.txt\n"
        "to_dir -> sub\n"
        "absolute -> /etc/hostname\n"
        "dangling -> nowhere\n"
        "loop -> loop\n"
        "sub/up -> ..\n"
        "alpha\nbeta\n"
        "./a.txt\n./sub/b.txt\n"
    )


async def test_the_root_of_an_upload_is_followed_when_it_is_a_symlink(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "a.txt").write_text("alpha\n")
    os.symlink("real", tmp_path / "folder_link")
    os.symlink("real/a.txt", tmp_path / "file_link")
    await sandbox.upload(tmp_path / "folder_link", "/up/followed")
    await sandbox.upload(tmp_path / "file_link", "/up/followed.txt")
    r = await sandbox.arun(
        "test -d /up/followed && test ! -L /up/followed && test ! -L /up/followed.txt && "
        "cat /up/followed/a.txt /up/followed.txt"
    )
    assert r.output == "alpha\nalpha\n"


# ---------------------------------------------------------------- 4. downloads like docker cp


async def test_a_download_of_etc_keeps_its_absolute_symlinks(
    fresh_py: Sandbox, tmp_path: Path
) -> None:
    links = (await fresh_py.arun("readlink /etc/localtime /etc/alternatives/awk")).output
    stat = await fresh_py.download("/etc", tmp_path / "etc")
    assert stat.is_dir
    got = [os.readlink(tmp_path / "etc" / name) for name in ("localtime", "alternatives/awk")]
    assert got == links.split() and all(target.startswith("/") for target in got)
    assert (tmp_path / "etc" / "passwd").read_text().startswith("root:")
    # The links were made, never followed: nothing was written where they point.
    assert sorted(os.listdir(tmp_path)) == ["etc"]


async def test_special_files_in_a_download_are_skipped_and_reported(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    await sandbox.arun(
        "rm -rf /tmp/sp && mkdir /tmp/sp && mkfifo /tmp/sp/pipe && echo hi > /tmp/sp/f "
        "&& ln /tmp/sp/f /tmp/sp/hard"
    )
    with anyio.fail_after(HANG):
        stat = await sandbox.download("/tmp/sp", tmp_path / "sp")
    assert stat.skipped == ["/tmp/sp/pipe: a FIFO, skipped"]
    assert sorted(os.listdir(tmp_path / "sp")) == ["f", "hard"]
    assert os.stat(tmp_path / "sp" / "hard").st_ino == os.stat(tmp_path / "sp" / "f").st_ino
    with pytest.raises(BadRequest, match=r"^nothing to download: /tmp/sp/pipe: a FIFO, skipped$"):
        await sandbox.download("/tmp/sp/pipe", tmp_path / "pipe")
    assert not (tmp_path / "pipe").exists()


def crafted_tar(members: list[tuple[tarfile.TarInfo, bytes]]) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for info, data in members:
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


def member(name: str, type: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = type
    info.linkname = linkname
    info.mode = 0o4777 if type == tarfile.REGTYPE else 0o755
    return info


def test_a_hostile_archive_writes_nothing_outside_its_target(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    spool = crafted_tar(
        [
            (member("root", tarfile.DIRTYPE), b""),
            (member("root/evil", tarfile.SYMTYPE, str(outside)), b""),
            (member("root/evil/through.txt"), b"through a link"),
            (member("root/../escaped.txt"), b"climbed out"),
            (member("/abs.txt"), b"absolute"),
            (member("root/null", tarfile.CHRTYPE), b""),
            (member("root/hard", tarfile.LNKTYPE, "/etc/passwd"), b""),
            (member("root/ok.txt"), b"fine"),
            (member("root/ok.txt", tarfile.SYMTYPE, "/etc/passwd"), b""),
            (member("root/ok.txt"), b"written again, not through the link"),
        ]
    )
    result = unpack(spool, tmp_path / "out", "/data/root")
    assert result.skipped == [
        "/data/root/evil/through.txt: its name leads out of the download, skipped",
        "/data/root/../escaped.txt: its name leads out of the download, skipped",
        "/abs.txt: its name leads out of the download, skipped",
        "/data/root/null: a character device, skipped",
        "/data/root/hard: a hard link to /etc/passwd, not a file of this download, skipped",
    ]
    assert os.listdir(outside) == []
    assert sorted(os.listdir(tmp_path)) == ["out", "outside"]
    assert os.readlink(tmp_path / "out" / "evil") == str(outside)
    ok = tmp_path / "out" / "ok.txt"
    assert ok.read_bytes() == b"written again, not through the link" and not ok.is_symlink()
    assert ok.stat().st_mode & 0o7777 == 0o755  # no setuid, no group/other write


async def test_a_cancelled_unpack_stops_and_leaves_nothing(tmp_path: Path) -> None:
    files = [(member(f"root/f{i}"), b"x" * 1000) for i in range(50)]
    archive = crafted_tar([(member("root", tarfile.DIRTYPE), b""), *files]).getvalue()
    with anyio.CancelScope() as scope:

        class CancelledWhileRead(io.BytesIO):
            def read(self, size: int | None = -1) -> bytes:
                anyio.from_thread.run_sync(scope.cancel)  # the caller gives up mid-unpack
                return super().read(size)

        spool = CancelledWhileRead(archive)
        check = anyio.from_thread.check_cancelled
        await anyio.to_thread.run_sync(unpack, spool, tmp_path / "out", "/root", check)
    assert scope.cancelled_caught
    assert os.listdir(tmp_path) == []  # no target, no staging folder


@pytest.mark.parametrize("format", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
@pytest.mark.parametrize("step", [1, 511, 512, 4096])
def test_the_scanner_reads_member_headers_as_tarfile_does(format: int, step: int) -> None:
    # The agent checks an upload's members with it as the stream passes, in chunks of any size.
    long = "deep/" * 30 + "name.txt"  # past ustar's 100 bytes: a PAX or GNU long name
    members = [
        (member("root", tarfile.DIRTYPE), b""),
        (member("root/" + long), b"x" * 1000),
        (member("root/link", tarfile.SYMTYPE, "/" + long), b""),
        (member("root/pipe", tarfile.FIFOTYPE), b""),
        (member("root/empty"), b""),
    ]
    if format == tarfile.USTAR_FORMAT:
        members[2][0].linkname = "/short"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=format) as archive:
        for info, data in members:
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    data = buffer.getvalue() + b"trailing garbage is never read"
    scanner = TarScanner()
    seen = []
    for offset in range(0, len(data), step):
        seen += scanner.feed(data[offset : offset + step])
    buffer.seek(0)
    expected = [(m.name, m.type, m.size, m.linkname) for m in tarfile.open(fileobj=buffer)]
    assert [(m.name, m.type, m.size, m.linkname) for m in seen] == expected
    assert scanner.ended


def test_the_scanner_refuses_what_is_not_tar() -> None:
    with pytest.raises(BadRequest, match=r"^not a tar stream: invalid header$"):
        TarScanner().feed(b"x" * 512)


def test_a_broken_archive_is_a_protocol_error(tmp_path: Path) -> None:
    with pytest.raises(ProtocolError, match=r"^the download of /x is not a tar stream: "):
        unpack(io.BytesIO(b"not a tar archive" * 64), tmp_path / "x", "/x")
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------- 5. local errors are ours


async def test_local_errors_are_ours(sandbox: Sandbox, tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(FileNotFound, match=r"/absent: no such local file or folder$"):
        await sandbox.upload(tmp_path / "absent", "/tmp/x")
    with pytest.raises(
        BadRequest, match=r"^cannot read local .*/file\.txt/x: Not a directory \(errno 20\)$"
    ):
        await sandbox.upload(tmp_path / "file.txt" / "x", "/tmp/x")
    await sandbox.write_file("/tmp/small.txt", b"small")
    with pytest.raises(
        BadRequest,
        match=r"^cannot write local .*/file\.txt/sub/small\.txt: Not a directory \(errno 20\)$",
    ):
        await sandbox.download("/tmp/small.txt", tmp_path / "file.txt" / "sub" / "small.txt")
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(BadRequest, match=r"^local .*/pipe is a FIFO; not replacing it$"):
        await sandbox.download("/tmp/small.txt", tmp_path / "pipe")
    assert sorted(os.listdir(tmp_path)) == ["file.txt", "pipe"]


async def test_names_that_are_not_utf8_round_trip(sandbox: Sandbox, tmp_path: Path) -> None:
    tree = tmp_path / "odd"
    tree.mkdir()
    name = os.fsdecode(b"caf\xe9.txt")
    (tree / name).write_bytes(b"latin-1 name")
    await sandbox.upload(tree, "/up/odd")
    back = tmp_path / "back"
    await sandbox.download("/up/odd", back)
    assert os.listdir(back) == [name]
    assert (back / name).read_bytes() == b"latin-1 name"


# ---------------------------------------------------------------- 6. the agent dies mid-upload


@pytest.fixture
def socket_agent(tmp_path: Path, docker_engine: None) -> Iterator[SocketAgent]:
    agent = SocketAgent(tmp_path / "agent.sock", f"files-{secrets.token_hex(3)}")
    assert agent.ensure()["started"] is True
    yield agent
    agent.kill(signal.SIGTERM)
    leftovers = agent.containers()
    if leftovers:
        subprocess.run(["docker", "rm", "-f", *leftovers], capture_output=True)


async def test_an_agent_killed_mid_upload_is_a_transport_error(
    socket_agent: SocketAgent, tmp_path: Path
) -> None:
    big = tmp_path / "big"
    with big.open("wb") as f:
        f.truncate(2 << 30)
    async with open_sdk_cluster([socket_agent.address], lease=30) as cluster:
        sb = await cluster.create_sandbox(SandboxConfig(image=SH_IMAGE, memory="64m"))
        conn = sb.cluster.connection(sb.sandbox_id)
        start = conn._channel.bytes_sent
        async with anyio.create_task_group() as tg:

            async def kill_once_streaming() -> None:
                await once(lambda: conn._channel.bytes_sent >= start + (16 << 20))
                socket_agent.kill()

            tg.start_soon(kill_once_streaming)
            with anyio.fail_after(HANG), pytest.raises(TransportError) as caught:
                await sb.upload(big, "/tmp/big")
        assert type(caught.value) is TransportError
        # The link's end as the reader saw it: a clean close, or a reset if data was unread.
        closed = re.escape(f"agent {socket_agent.address} closed the connection")
        assert re.fullmatch(f"{closed}|stream from peer broke: .*", str(caught.value))


# ---------------------------------------------------------------- 7. kernel folders


@pytest.mark.parametrize("path", ["/proc/self/status", "/sys/kernel/x", "/dev/null", "/proc"])
async def test_kernel_folders_are_refused(sandbox: Sandbox, tmp_path: Path, path: str) -> None:
    top = "/" + path.split("/")[1]
    message = f"^{path} is under {top}, {KERNEL}; use execute\\(\\['cat', '{path}'\\]\\)"
    with pytest.raises(BadRequest, match=message):
        await sandbox.read_file(path)
    with pytest.raises(BadRequest, match=message):
        await sandbox.write_file(path, b"x")
    with pytest.raises(BadRequest, match=message):
        await sandbox.download(path, tmp_path / "x")
    (tmp_path / "f").write_text("x")
    with pytest.raises(BadRequest, match=message):
        await sandbox.upload(tmp_path / "f", path)
    assert not (tmp_path / "x").exists()


async def test_an_upload_into_a_kernel_folder_by_a_member_name_is_refused(
    fresh: Sandbox,
) -> None:
    # A client that names the target only inside the tar stream is checked member by member,
    # here after the engine has begun to unpack the stream.
    conn = fresh.cluster.connection(fresh.sandbox_id)
    request = Upload(id=conn.next_id(), sandbox_id=fresh.sandbox_id, path="/")
    first = os.urandom(4 << 20)

    async def chunks() -> AsyncIterator[bytes]:
        yield dir_header("tmp/fine")
        yield file_header("tmp/fine/first.bin", len(first)) + first + padding(len(first))
        yield single_file("proc/sneaky", b"x")[: -len(END)]
        yield END

    with pytest.raises(BadRequest, match=f"^/proc/sneaky is under /proc, {KERNEL}"):
        async with conn.open_request(request) as answers:
            await conn.send_chunks(request.id, chunks())
            async for message in answers:
                if isinstance(message, Reply):
                    raise_for_reply(message, TransferReply, request)
    await assert_usable(fresh)


# ---------------------------------------------------------------- 8. wrong types


async def test_wrong_types_are_bad_requests_naming_the_argument(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    conn = sandbox.cluster.connection(sandbox.sandbox_id)
    sid = sandbox.sandbox_id
    local_must = "local must be a local path \\(str or os.PathLike\\)"
    with pytest.raises(BadRequest, match=f"^upload: {local_must}, not int$"):
        await upload(conn, sid, 123, "/x")
    with pytest.raises(BadRequest, match=f"^upload: {local_must}, not bytes$"):
        await upload(conn, sid, b"/tmp", "/x")
    with pytest.raises(BadRequest, match=r"^download: local must be .*, not NoneType$"):
        await download(conn, sid, "/x", None)
    remote_must = "remote must be a str \\(an absolute path in the sandbox\\)"
    with pytest.raises(BadRequest, match=f"^upload: {remote_must}, not int$"):
        await sandbox.upload(tmp_path, 123)  # type: ignore[arg-type]
    with pytest.raises(BadRequest, match=f"^download: {remote_must}, not PosixPath$"):
        await sandbox.download(Path("/etc"), tmp_path / "x")  # type: ignore[arg-type]
    with pytest.raises(BadRequest, match=r"^upload: remote 'tmp/x' must be an absolute path"):
        await sandbox.upload(tmp_path, "tmp/x")
    with pytest.raises(BadRequest, match=r"^download: remote '/\.\.' must name a file or folder"):
        await sandbox.download("/..", tmp_path / "x")
    with pytest.raises(BadRequest, match=r"^upload: local '' is not a path$"):
        await upload(conn, sid, "", "/x")


# ---------------------------------------------------------------- 9. large transfers, credit


async def test_a_200_mb_upload_and_download_round_trip_byte_exact(
    fresh: Sandbox, tmp_path: Path
) -> None:
    size = 200 << 20
    src, back = tmp_path / "big.bin", tmp_path / "back.bin"
    try:
        with src.open("wb") as f:  # sparse, with random blocks spread through it
            f.truncate(size)
            for offset in range(0, size, 7 << 20):
                f.seek(offset)
                f.write(os.urandom(64 << 10))
        with anyio.fail_after(300):
            await fresh.upload(src, "/tmp/big.bin")
            r = await fresh.arun("wc -c < /tmp/big.bin")
            assert r.output.strip() == str(size)
            await fresh.download("/tmp/big.bin", back)
        assert digest(back) == digest(src)
    finally:
        src.unlink(missing_ok=True)
        back.unlink(missing_ok=True)


def digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()
