"""What a transfer takes and what it refuses: special files, symlinks, downloads like
`docker cp`, local errors, names that are no UTF-8, kernel folders, wrong types.

Every `fail_after` here is a hang detector (generous on purpose), never a timing assertion.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest

from rock_core import Cluster
from rock_sdk import BadRequest, FileNotFound, Sandbox
from rock_sdk._transfer import download, upload

from ..conftest import PY_IMAGE
from ._transfers import HANG, KERNEL, own_sandbox

pytestmark = pytest.mark.anyio


@pytest.fixture
async def fresh_py(cluster: Cluster) -> AsyncIterator[Sandbox]:
    """A python sandbox of its own."""
    async for sb in own_sandbox(cluster, PY_IMAGE):
        yield sb


# ---------------------------------------------------------------- special files


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


# ---------------------------------------------------------------- symlinks in uploads


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


# ---------------------------------------------------------------- downloads like docker cp


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


# ---------------------------------------------------------------- local errors are ours


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


# ---------------------------------------------------------------- kernel folders


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


# ---------------------------------------------------------------- wrong types


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
