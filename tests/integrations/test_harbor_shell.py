"""The shell lines behind the Harbor environment's `exec`: plain functions, checked without
Harbor or Docker (`rock_sdk.integrations._harbor_shell`)."""

from __future__ import annotations

import pytest

from rock_sdk.integrations import _harbor_shell as shell


@pytest.mark.parametrize(
    ("user", "prefix"),
    [
        (None, []),
        ("root", []),
        (0, []),
        ("nobody", ["runuser", "-u", "nobody", "--"]),
        (1234, ["setpriv", "--reuid=1234", "--regid=1234", "--clear-groups", "--"]),
    ],
)
def test_user_prefix(user: str | int | None, prefix: list[str]) -> None:
    assert shell.user_prefix(user, ("root", "0")) == prefix


def test_user_prefix_refuses_other_types() -> None:
    with pytest.raises(ValueError, match=r"^user must be a name or a numeric id, got True$"):
        shell.user_prefix(True, ("root", "0"))


def test_exec_line_quotes_everything() -> None:
    line = shell.exec_line(
        "echo $X; exit 3",
        shell="bash",
        stderr_file=shell.stderr_path("s 1"),
        cwd="/my dir",
        env={"X": "a'b"},
        user=["runuser", "-u", "nobody", "--"],
    )
    assert line == (
        "( cd '/my dir' && exec runuser -u nobody -- env 'X=a'\"'\"'b' bash -c 'echo $X; exit 3'"
        " ) </dev/null 2>'/tmp/.rock-harbor-s 1.stderr'"
    )


def test_image_tag_is_a_valid_local_tag() -> None:
    assert shell.image_tag("Hello World__v2", "ABCdef0123456789") == (
        "rock-harbor/hello-world-v2:abcdef012345"
    )
    assert shell.image_tag("___", "") == "rock-harbor/task:latest"
