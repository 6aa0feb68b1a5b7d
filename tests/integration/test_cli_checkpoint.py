"""`rock checkpoint` and `rock checkpoints ls|rm` against real Docker: the happy paths, the
error paths (message and exit code) and ``--json``, on sandboxes another program owns."""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator

import pytest

from .test_cli import cli, held_sandboxes

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def held(docker_engine: None) -> Iterator[str]:
    with held_sandboxes(1) as (sandbox_id,):
        yield sandbox_id


def image_present(checkpoint_id: str) -> bool:
    out = subprocess.run(
        ["docker", "images", "-q", f"rock-checkpoint:{checkpoint_id}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return bool(out.stdout.strip())


def test_checkpoint_list_and_remove(held: str) -> None:
    name = f"cli-{secrets.token_hex(3)}"
    code, out, err = cli("checkpoint", held[:7], "--name", name)
    assert (code, out.decode(), err) == (0, f"{name}\n", b"")
    assert image_present(name)
    code, out, _ = cli("checkpoints", "ls")
    assert code == 0
    (line,) = [line for line in out.decode().splitlines() if line.startswith(name)]
    assert line.split()[2] == held and line.split()[-1] == "no"  # its SOURCE, not KEPT
    code, out, _ = cli("checkpoints", "ls", "-q")
    assert code == 0 and name in out.decode().split()
    code, out, err = cli("checkpoints", "rm", name[:-1])  # a unique prefix
    assert (code, out.decode(), err) == (0, f"{name}\n", b"")
    assert not image_present(name)


def test_json_rows_are_the_table_rows(held: str) -> None:
    code, out, _ = cli("checkpoint", held, "--keep", "--json")
    assert code == 0
    made = json.loads(out)
    assert (made["source"], made["kept"], made["containers"]) == (held, True, 0)
    assert made["image"] == f"rock-checkpoint:{made['checkpoint_id']}"
    code, out, _ = cli("checkpoints", "ls", "--json")
    rows = [json.loads(line) for line in out.decode().splitlines()]
    assert code == 0 and made in rows
    assert cli("checkpoints", "rm", made["checkpoint_id"])[0] == 0


def test_errors_are_said_once_with_exit_125(held: str) -> None:
    code, out, err = cli("checkpoint", "no-such-sandbox")
    assert (code, out) == (125, b"")
    assert err.decode() == "rock checkpoint: no sandbox 'no-such-sandbox' on any host\n"
    code, out, err = cli("checkpoint", held, "--name", "Bad Name")
    assert (code, out) == (125, b"")
    assert err.decode().startswith("rock checkpoint: ") and "checkpoint_id" in err.decode()
    code, out, err = cli("checkpoints", "rm", "no-such-checkpoint")
    assert (code, out) == (125, b"")
    assert err.decode() == (
        "rock checkpoints rm: checkpoint 'no-such-checkpoint' is on no connected host\n"
    )
    code, out, err = cli("checkpoints", "rm", "")
    assert (code, out) == (125, b"")
    assert err.decode() == (
        "rock checkpoints rm: the checkpoint id is empty: give an id or a unique prefix of one\n"
    )
