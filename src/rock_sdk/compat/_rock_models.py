"""ROCK's request, response and config objects, with ROCK's field names and defaults.

Rules:
- Field names, types and defaults are ROCK's (rl-rock 1.11.0), so code that builds or reads
  them ports unchanged; only the fields `rock_sdk.compat.rock` acts on are listed.
- Values are plain `msgspec.Struct`s, checked when a `Sandbox` method takes them (`checked`):
  a wrong type or value is `BadRequest` naming the object, before anything runs.
- `model_dump()` gives a dict, as ROCK's pydantic models do.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal, TypeVar

import msgspec

from rock_sdk import BadRequest
from rock_sdk import SandboxConfig as KitConfig


class _Model(msgspec.Struct, kw_only=True):
    """A ROCK object: keyword fields, `model_dump()`."""

    def model_dump(self) -> dict[str, Any]:
        """The fields as a dict of plain values (enums as their values)."""
        dumped: dict[str, Any] = msgspec.to_builtins(self)
        return dumped


M = TypeVar("M", bound=_Model)


def checked(value: object, kind: type[M], what: str) -> M:
    """`value` if it is a valid `kind`; `BadRequest` naming `what` otherwise."""
    if not isinstance(value, kind):
        raise BadRequest(f"{what} takes a {kind.__name__}, got {type(value).__name__}: {value!r}")
    try:
        return msgspec.convert(msgspec.to_builtins(value), kind)
    except (msgspec.ValidationError, TypeError) as exc:
        raise BadRequest(f"{what}: invalid {kind.__name__}: {exc}") from None


class RunMode(StrEnum):
    """How `Sandbox.arun` runs a command: in the session, or in the background (nohup)."""

    NORMAL = "normal"
    NOHUP = "nohup"


class UploadMode(StrEnum):
    """ROCK's upload routes; here every upload is streamed directly (no OSS)."""

    AUTO = "auto"
    OSS = "oss"
    DIRECT = "direct"


# ---------------------------------------------------------------------------- requests


class Command(_Model, kw_only=True):
    """A one-off command for `Sandbox.execute`: an argv list, or a string run by ``sh -c``."""

    session_type: Literal["bash"] = "bash"
    command: str | list[str]
    timeout: float | None = 1200
    env: dict[str, str] | None = None
    cwd: str | None = None


class CreateBashSessionRequest(_Model, kw_only=True):
    """A named shell session; `startup_source` files are sourced in it when it opens."""

    session_type: Literal["bash"] = "bash"
    session: str = "default"
    startup_source: list[str] = []
    env_enable: bool = False
    env: dict[str, str] | None = None
    remote_user: str | None = None


CreateSessionRequest = CreateBashSessionRequest


class BashAction(_Model, kw_only=True):
    """A command in a session; `check="raise"` makes a non-zero exit an error."""

    action_type: Literal["bash"] = "bash"
    command: str
    session: str = "default"
    timeout: float | None = None
    check: Literal["silent", "raise", "ignore"] = "raise"


Action = BashAction


class CloseBashSessionRequest(_Model, kw_only=True):
    """Which session `Sandbox.close_session` ends."""

    session_type: Literal["bash"] = "bash"
    session: str = "default"


CloseSessionRequest = CloseBashSessionRequest


class WriteFileRequest(_Model, kw_only=True):
    """Text to write to `path` in the sandbox (parent folders are created)."""

    content: str
    path: str


class ReadFileRequest(_Model, kw_only=True):
    """A file to read as text, decoded with `encoding` and `errors` (None: UTF-8, strict)."""

    path: str
    encoding: str | None = None
    errors: str | None = None


class UploadRequest(_Model, kw_only=True):
    """A local file to copy to `target_path` in the sandbox."""

    source_path: str
    target_path: str
    upload_mode: UploadMode = UploadMode.AUTO


# ---------------------------------------------------------------------------- responses


class BashObservation(_Model, kw_only=True):
    """What a command in a session produced: `output` (stripped), `exit_code`, and why it
    failed when it did."""

    session_type: Literal["bash"] = "bash"
    output: str = ""
    exit_code: int | None = None
    failure_reason: str = ""
    expect_string: str = ""


Observation = BashObservation


class CommandResponse(_Model, kw_only=True):
    """What `Sandbox.execute` returns: stdout and stderr apart."""

    stdout: str = ""
    stderr: str = ""
    exit_code: int | None = None


class CreateBashSessionResponse(_Model, kw_only=True):
    """What opening a session printed."""

    output: str = ""
    session_type: Literal["bash"] = "bash"


CreateSessionResponse = CreateBashSessionResponse


class CloseBashSessionResponse(_Model, kw_only=True):
    """A session was closed."""

    session_type: Literal["bash"] = "bash"


CloseSessionResponse = CloseBashSessionResponse


class WriteFileResponse(_Model, kw_only=True):
    """Whether a write succeeded, and why not."""

    success: bool = False
    message: str = ""


class ExecuteBashSessionResponse(_Model, kw_only=True):
    """Whether a background command completed, and how."""

    success: bool = False
    message: str = ""


class ReadFileResponse(_Model, kw_only=True):
    """A file's text."""

    content: str = ""


class UploadResponse(_Model, kw_only=True):
    """Whether an upload succeeded, and why not."""

    success: bool = False
    message: str = ""
    file_name: str = ""


FileUploadResponse = UploadResponse


class IsAliveResponse(_Model, kw_only=True):
    """Whether the sandbox runs; true in a boolean context when it does."""

    is_alive: bool
    message: str = ""

    def __bool__(self) -> bool:
        return self.is_alive


class SandboxStatusResponse(_Model, kw_only=True):
    """The part of ROCK's status that has a meaning here."""

    sandbox_id: str | None = None
    is_alive: bool = True
    host_name: str | None = None
    image: str | None = None
    cpus: float | None = None
    memory: str | None = None
    state: str | None = None


class CloseResponse(_Model, kw_only=True):
    """The sandbox was closed."""


# ---------------------------------------------------------------------------- config


class SandboxConfig(_Model, kw_only=True):
    """ROCK's sandbox config. What it means here (see docs/integrations.md, "ROCK scripts"):

    `image`, `cpus`, `memory` and `sandbox_id` as in `rock_sdk.SandboxConfig`;
    `auto_clear_seconds` is the idle timeout after which the sandbox is deleted;
    `auto_delete_seconds` deletes it that long after a stop; `startup_timeout` bounds the wait
    for room on a host. There is no admin server: `base_url`, `extra_headers`,
    `xrl_authorization`, `cluster`, `namespace`, `user_id` and `experiment_id` are kept but
    unused, and `limit_cpus` and `disk` are not applied. What cannot be done here (GPUs, kata,
    Windows images, registry logins, archiving) is `BadRequest` when asked for.
    """

    base_url: str = "http://localhost:8080"
    xrl_authorization: str | None = None
    extra_headers: dict[str, str] = {}
    image: str = "python:3.11"
    image_os: str = "linux"
    auto_clear_seconds: int = 60 * 5
    startup_timeout: float = 180
    memory: str = "8g"
    cpus: float = 2
    limit_cpus: float | None = None
    num_gpus: float | None = None
    accelerator_type: str | None = None
    user_id: str | None = None
    experiment_id: str | None = None
    cluster: str = "vpc-nt-a"
    namespace: str | None = None
    registry_username: str | None = None
    registry_password: str | None = None
    use_kata_runtime: bool = False
    sandbox_id: str | None = None
    auto_archive_seconds: int | None = None
    auto_delete_seconds: int | None = None
    disk: str | None = "50G"

    def to_kit(self) -> KitConfig:
        """This kit's config for the same sandbox; `BadRequest` for what cannot be had here."""
        config = checked(self, SandboxConfig, "Sandbox")
        unsupported = {
            "num_gpus": config.num_gpus,
            "accelerator_type": config.accelerator_type,
            "use_kata_runtime": config.use_kata_runtime or None,
            "registry_username": config.registry_username,
            "registry_password": config.registry_password,
            "auto_archive_seconds": config.auto_archive_seconds,
        }
        for name, value in unsupported.items():
            if value is not None:
                raise BadRequest(f"SandboxConfig.{name}={value!r} is not supported by this kit")
        if config.image_os.casefold() != "linux":
            raise BadRequest(f"SandboxConfig.image_os={config.image_os!r}: only linux images run")
        for name in ("auto_clear_seconds", "auto_delete_seconds"):
            seconds = getattr(config, name)
            if seconds is not None and seconds <= 0:
                raise BadRequest(f"SandboxConfig.{name} must be positive, got {seconds!r}")
        kit = KitConfig(
            image=config.image,
            cpus=config.cpus,
            memory=config.memory,
            network=True,  # a ROCK sandbox reaches the network (to install packages)
            sandbox_id=config.sandbox_id,
            startup_timeout=config.startup_timeout,
            idle_timeout=float(config.auto_clear_seconds),
            on_expire="delete",
            auto_delete_after=config.auto_delete_seconds,
        )
        kit.to_spec()  # every value checked now, before a start
        return kit
