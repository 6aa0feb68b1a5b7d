"""What the container runtime says when it cannot start a process, as typed errors."""

from __future__ import annotations

import pytest

from rock_agent._start_failure import not_running, start_failure
from rock_core._errors import BadRequest, FileNotFound, RockError, SandboxFailed

HEAD = "cannot run 'x' in sandbox sb-1"


@pytest.mark.parametrize(
    ("text", "error", "says"),
    [
        (
            "OCI runtime exec failed: exec failed: unable to start container process: exec: "
            '"nope": executable file not found in $PATH: unknown',
            FileNotFound,
            "program 'nope' not found on the PATH",
        ),
        (
            "OCI runtime exec failed: exec failed: unable to start container process: chdir "
            'to cwd ("/gone") set in config.json failed: no such file or directory: unknown',
            FileNotFound,
            "its working folder /gone does not exist",
        ),
        ("unable to find user bob: no matching entries in passwd file", BadRequest, "no user"),
        ("cannot exec in a deleted state: unknown", SandboxFailed, "the sandbox is not running"),
        ("cannot exec in a stopped state: unknown", SandboxFailed, "the sandbox is not running"),
        ("task 0577446 not found: not found", SandboxFailed, "the sandbox is not running"),
        ("container 0577446 is not running", SandboxFailed, "the sandbox is not running"),
    ],
)
def test_known_refusals_are_typed(text: str, error: type[RockError], says: str) -> None:
    found = start_failure(text, HEAD)
    assert type(found) is error
    assert str(found).startswith(HEAD) and says in str(found), found


def test_an_unknown_refusal_is_left_to_the_caller() -> None:
    assert start_failure("something new: unknown", HEAD) is None


def test_not_running_names_the_sandbox_its_state_and_what_to_do() -> None:
    refusal = not_running("sb", "exited", "start it before forwarding a port")
    assert isinstance(refusal, BadRequest)
    assert str(refusal) == "sandbox sb is not running (exited); start it before forwarding a port"
    assert refusal.details == {"sandbox_id": "sb"}
