"""Files: binary-safe read/write, parents created, clear errors, streamed upload/download."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from rock_sdk import BadRequest, FileNotFound, Sandbox

pytestmark = pytest.mark.anyio

ALL_BYTES = bytes(range(256)) * 7


async def test_write_then_read_is_byte_exact(sandbox: Sandbox) -> None:
    await sandbox.write_file("/work/deep/er/data.bin", ALL_BYTES)
    assert await sandbox.read_file("/work/deep/er/data.bin") == ALL_BYTES


async def test_empty_file(sandbox: Sandbox) -> None:
    await sandbox.write_file("/tmp/empty", b"")
    assert await sandbox.read_file("/tmp/empty") == b""


async def test_text_helpers_and_overwrite(sandbox: Sandbox) -> None:
    await sandbox.write_text("/tmp/t.txt", "first ✓\n")
    await sandbox.write_text("/tmp/t.txt", "second ✓\n")
    assert await sandbox.read_text("/tmp/t.txt") == "second ✓\n"


async def test_written_file_is_visible_to_sessions(sandbox: Sandbox) -> None:
    await sandbox.write_file("/tmp/script.sh", b"echo from-script\n", mode=0o755)
    r = await sandbox.arun("/tmp/script.sh")
    assert r.output == "from-script\n"


async def test_file_made_by_a_command_can_be_read(sandbox: Sandbox) -> None:
    await sandbox.arun("printf 'made\\000here' > /tmp/made.bin")
    assert await sandbox.read_file("/tmp/made.bin") == b"made\x00here"


async def test_missing_file_raises_not_found(sandbox: Sandbox) -> None:
    with pytest.raises(FileNotFound, match=r"/nope/missing\.txt: no such file or folder"):
        await sandbox.read_file("/nope/missing.txt")


async def test_reading_a_folder_is_a_bad_request(sandbox: Sandbox) -> None:
    with pytest.raises(BadRequest, match="/etc is a folder; use download"):
        await sandbox.read_file("/etc")


@pytest.mark.parametrize("path", ["relative.txt", "tmp/x"])
async def test_relative_paths_are_refused(sandbox: Sandbox, path: str) -> None:
    must = f"request: path '{path}': must be an absolute path"
    with pytest.raises(BadRequest, match=f"^invalid 'write' {must}"):
        await sandbox.write_file(path, b"x")
    with pytest.raises(BadRequest, match=f"^invalid 'read' {must}"):
        await sandbox.read_file(path)


async def test_upload_and_download_a_file(sandbox: Sandbox, tmp_path: Path) -> None:
    src = tmp_path / "blob.bin"
    src.write_bytes(os.urandom(3 << 20) + ALL_BYTES)
    stat = await sandbox.upload(src, "/data/in/blob.bin")
    assert stat.size > src.stat().st_size  # a tar stream: headers and padding included
    r = await sandbox.arun("wc -c < /data/in/blob.bin")
    assert r.output.strip() == str(src.stat().st_size)
    back = tmp_path / "back.bin"
    await sandbox.download("/data/in/blob.bin", back)
    assert hashlib.sha256(back.read_bytes()).digest() == hashlib.sha256(src.read_bytes()).digest()


async def test_upload_and_download_a_folder(sandbox: Sandbox, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "sub" / "deeper").mkdir(parents=True)
    (tree / "a.txt").write_text("alpha\n")
    (tree / "sub" / "b.bin").write_bytes(ALL_BYTES)
    (tree / "sub" / "deeper" / "c.txt").write_text("gamma\n")
    await sandbox.upload(tree, "/up/tree")
    r = await sandbox.arun("cd /up/tree && find . -type f | sort && cat sub/deeper/c.txt")
    assert r.output == "./a.txt\n./sub/b.bin\n./sub/deeper/c.txt\ngamma\n"
    out = tmp_path / "out"
    await sandbox.download("/up/tree", out)
    assert (out / "a.txt").read_text() == "alpha\n"
    assert (out / "sub" / "b.bin").read_bytes() == ALL_BYTES
    assert (out / "sub" / "deeper" / "c.txt").read_text() == "gamma\n"
    # Into an existing folder, like cp -r.
    into = tmp_path / "into"
    into.mkdir()
    await sandbox.download("/up/tree", into)
    assert (into / "tree" / "a.txt").read_text() == "alpha\n"


async def test_download_missing_raises_not_found(sandbox: Sandbox, tmp_path: Path) -> None:
    with pytest.raises(FileNotFound, match="/no/such/dir: no such file or folder"):
        await sandbox.download("/no/such/dir", tmp_path / "x")
    assert not (tmp_path / "x").exists()


async def test_upload_missing_local_raises_not_found(sandbox: Sandbox, tmp_path: Path) -> None:
    with pytest.raises(FileNotFound, match="no such local file or folder"):
        await sandbox.upload(tmp_path / "absent", "/tmp/absent")
