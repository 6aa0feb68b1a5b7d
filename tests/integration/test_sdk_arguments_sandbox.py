"""SDK arguments (see `_sdk_arguments`): a sandbox's files, timeouts, ports and commits given
bad arguments raise a typed `RockError`, and the sandbox still works on the same link."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from rock_sdk import BadRequest, RockError, Sandbox, SandboxCluster

from ._sdk_arguments import Call, bad_arguments, invalid, refused_and_still_works

pytestmark = pytest.mark.anyio


async def forward(sb: Sandbox, **kwargs: object) -> None:
    async with sb.expose_port(**kwargs):
        pass


# (what, call, error class, message); "{host}" stands for the host's id.
CASES: list[tuple[str, Call, type[RockError], str]] = [
    # ---------------------------------------------------------------- files
    (
        "write_file Path",
        lambda sb, _: sb.write_file("/tmp/x", Path("/etc/hosts")),
        BadRequest,
        "data must be bytes or str, got PosixPath('/etc/hosts'): to copy a local file, use"
        " upload()",
    ),
    (
        "write_file int",
        lambda sb, _: sb.write_file("/tmp/x", 123),
        BadRequest,
        "data must be bytes or str, got 123",
    ),
    (
        "write_file None",
        lambda sb, _: sb.write_file("/tmp/x", None),
        BadRequest,
        "data must be bytes or str, got None",
    ),
    (
        "write_file mode -1",
        lambda sb, _: sb.write_file("/tmp/x", b"x", mode=-1),
        BadRequest,
        invalid("write", "mode -1: Expected `int` >= 0"),
    ),
    (
        "write_file mode str",
        lambda sb, _: sb.write_file("/tmp/x", b"x", mode="644"),
        BadRequest,
        invalid("write", "mode '644': Expected `int`, got `str`"),
    ),
    (
        "write_file path int",
        lambda sb, _: sb.write_file(123, b"x"),
        BadRequest,
        invalid("write", "path 123: Expected `str`, got `int`"),
    ),
    (
        "write_text int",
        lambda sb, _: sb.write_text("/tmp/x", 123),
        BadRequest,
        "text must be a str, got 123",
    ),
    (
        "write_text encoding",
        lambda sb, _: sb.write_text("/tmp/x", "x", encoding="nope"),
        BadRequest,
        "unknown encoding 'nope'",
    ),
    (
        "write_text not encodable",
        lambda sb, _: sb.write_text("/tmp/x", "é", encoding="ascii"),
        BadRequest,
        "text cannot be written as ascii: 'ascii' codec can't encode character '\\xe9' in"
        " position 0: ordinal not in range(128)",
    ),
    (
        "read_file int",
        lambda sb, _: sb.read_file(123),
        BadRequest,
        invalid("read", "path 123: Expected `str`, got `int`"),
    ),
    (
        "read_file relative",
        lambda sb, _: sb.read_file("rel"),
        BadRequest,
        invalid(
            "read", "path 'rel': must be an absolute path (starting with '/') with no NUL byte"
        ),
    ),
    (
        "read_text encoding",
        lambda sb, _: sb.read_text("/etc/hostname", encoding="nope"),
        BadRequest,
        "unknown encoding 'nope'",
    ),
    (
        "read_text not text",
        lambda sb, _: sb.read_text("/tmp/binary"),
        BadRequest,
        "file /tmp/binary is not utf-8 text (invalid start byte at byte 2); read_file()"
        " returns its bytes",
    ),
    (
        "upload local int",
        lambda sb, _: sb.upload(123, "/tmp"),
        BadRequest,
        "upload: local must be a local path (str or os.PathLike), not int",
    ),
    (
        "upload remote int",
        lambda sb, _: sb.upload("/etc/hostname", 123),
        BadRequest,
        "upload: remote must be a str (an absolute path in the sandbox), not int",
    ),
    (
        "download remote int",
        lambda sb, _: sb.download(123, "/tmp/dl"),
        BadRequest,
        "download: remote must be a str (an absolute path in the sandbox), not int",
    ),
    (
        "download local int",
        lambda sb, _: sb.download("/etc/hostname", 123),
        BadRequest,
        "download: local must be a local path (str or os.PathLike), not int",
    ),
    # ---------------------------------------------------------------- timeouts, images, ports
    (
        "set_timeouts nan",
        lambda sb, _: sb.set_timeouts(idle_timeout=math.nan),
        BadRequest,
        invalid("timeouts", "idle_timeout nan: Expected `float` > 0.0"),
    ),
    (
        "set_timeouts -1",
        lambda sb, _: sb.set_timeouts(lifetime=-1),
        BadRequest,
        invalid("timeouts", "lifetime -1: Expected `float` > 0.0"),
    ),
    (
        "set_timeouts str",
        lambda sb, _: sb.set_timeouts(auto_delete_after="5"),
        BadRequest,
        invalid("timeouts", "auto_delete_after '5': Expected `float | null`, got `str`"),
    ),
    (
        "set_timeouts on_expire",
        lambda sb, _: sb.set_timeouts(on_expire="boom"),
        BadRequest,
        invalid("timeouts", "on_expire 'boom': Invalid enum value 'boom'"),
    ),
    (
        "expose_port 0",
        lambda sb, _: forward(sb, port=0),
        BadRequest,
        "port must be between 1 and 65535, got 0",
    ),
    (
        "expose_port 70000",
        lambda sb, _: forward(sb, port=70000),
        BadRequest,
        "port must be between 1 and 65535, got 70000",
    ),
    (
        "expose_port str",
        lambda sb, _: forward(sb, port="80"),
        BadRequest,
        "port must be between 1 and 65535, got '80'",
    ),
    (
        "expose_port local_port",
        lambda sb, _: forward(sb, port=80, local_port=-1),
        BadRequest,
        "local_port must be a whole number between 0 and 65535, got -1",
    ),
    (
        "expose_port on_error",
        lambda sb, _: forward(sb, port=80, on_error="log"),
        BadRequest,
        "on_error must be a callable taking the error of a failed connection, or None, got 'log'",
    ),
    (
        "commit changes str",
        lambda sb, _: sb.commit("rock-test/never:1", changes="ENV A=1"),
        BadRequest,
        "changes takes a list of Dockerfile instructions, not one string",
    ),
    (
        "commit changes None",
        lambda sb, _: sb.commit("rock-test/never:1", changes=None),
        BadRequest,
        "changes must be a list such as ['ENV A=1'], got None",
    ),
    (
        "commit changes [int]",
        lambda sb, _: sb.commit("rock-test/never:1", changes=[1]),
        BadRequest,
        invalid("commit", "changes[0]: Expected `str`, got `int`"),
    ),
    (
        "commit image int",
        lambda sb, _: sb.commit(123),
        BadRequest,
        invalid("commit", "image 123: Expected `str`, got `int`"),
    ),
]


@bad_arguments(CASES)
async def test_a_bad_argument_is_a_typed_error_and_the_sandbox_still_works(
    target: Sandbox, sdk: SandboxCluster, call: Call, error: type[RockError], message: str
) -> None:
    await refused_and_still_works(target, sdk, call, error, message)
