"""Harbor environment: run Harbor trials (Terminal-Bench and the like) in sandboxes of the kit.

Select it with Harbor's import path, ``rock_sdk.integrations.harbor:RockEnvironment``
(``harbor trials start -e rock_sdk.integrations.harbor:RockEnvironment``, or
``EnvironmentConfig(import_path=...)``). Needs the ``harbor`` extra (Python >= 3.12).

Rules:
- One sandbox per environment. `start` creates it, from the task's prebuilt
  ``docker_image`` or from an image built from the task's ``environment/Dockerfile`` on the
  hosts' engine (`SandboxCluster.build_image`; no registry needed when its base image is
  there); a start that fails part way deletes the sandbox before it raises. `stop` deletes it
  (``delete=False`` stops it and keeps its files).
- Every `exec` runs on a persistent session of the sandbox (`_harbor_shell` says how cwd,
  env, user and stderr are done). Sessions are pooled, one per command in flight, so
  concurrent execs never share a shell.
- Where it runs: the program's local engine, through the event loop's shared embedded cluster,
  which any task may use (Harbor stops an environment from another task than started it);
  inside ``with use_cluster(cluster):`` on that cluster (SSH hosts too).
- The capability flags say only what is true: internet can be disabled (a sandbox's network
  is off unless the task's policy is public); no GPUs, mounts, compose, allowlists, Windows,
  or network policy changes after start. CPU and memory are hard limits.
- A timed-out `exec` raises `RuntimeError`, as Harbor's Docker environment does, and a
  Dockerfile that does not build raises Harbor's `SandboxBuildFailedError` (not retried); other
  errors of the kit (a missing image, a lost host) reach Harbor as the kit's, message kept.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

import anyio
from harbor.environments.base import BaseEnvironment, SandboxBuildFailedError
from harbor.environments.base import ExecResult as HarborExecResult
from harbor.environments.capabilities import (
    EnvironmentCapabilities,
    EnvironmentResourceCapabilities,
)
from harbor.environments.definition import (
    require_agent_environment_definition,
    should_use_prebuilt_docker_image,
)
from harbor.environments.options import EnvironmentOptions
from harbor.models.trial.config import ResourceMode

from rock_core.protocol import MAX_DATA
from rock_sdk import (
    BadRequest,
    FileNotFound,
    RockError,
    Sandbox,
    SandboxCluster,
    SandboxConfig,
    open_cluster,
)

from . import _harbor_shell as shell

__all__ = ["RockEnvironment", "RockEnvironmentOptions", "use_cluster"]

CLOSE_TIMEOUT = 10.0  # seconds to end a session whose command was cancelled

_cluster: ContextVar[SandboxCluster | None] = ContextVar("rock_harbor_cluster", default=None)


@contextlib.contextmanager
def use_cluster(cluster: SandboxCluster) -> Iterator[None]:
    """Place the sandboxes of the Harbor environments started inside the block on `cluster`.

    Harbor's tasks inherit the block's context, so ``with use_cluster(c): await job.run()``
    runs every trial of the job there. The cluster must outlive the environments.
    """
    if not isinstance(cluster, SandboxCluster):
        raise TypeError(f"use_cluster takes a SandboxCluster, got {cluster!r}")
    token = _cluster.set(cluster)
    try:
        yield
    finally:
        _cluster.reset(token)


class RockEnvironmentOptions(EnvironmentOptions):  # type: ignore[misc]
    """The environment's kwargs (``--ek pull=never``)."""

    pull: Literal["missing", "never", "always"] = "missing"


class RockEnvironment(BaseEnvironment):  # type: ignore[misc]
    """A Harbor environment backed by one sandbox of the kit; see the module's rules."""

    options_model = RockEnvironmentOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._sandbox: Sandbox | None = None
        self._idle: list[str] = []  # sessions with no command running
        self._sessions = 0  # sessions made so far (they are named by number)
        self._closed: set[str] = set()  # sessions whose shell ended
        self._shell = "bash"
        self._who: tuple[str, str] = ("root", "0")
        super().__init__(*args, **kwargs)

    @staticmethod
    def type() -> str:
        """Harbor's name for this environment type."""
        return "rock"

    @property
    def capabilities(self) -> EnvironmentCapabilities:
        """What the environment can do, truthfully (see the module's rules)."""
        return EnvironmentCapabilities(disable_internet=True)

    @classmethod
    def resource_capabilities(cls) -> EnvironmentResourceCapabilities:
        """CPUs (fractional too) and memory are enforced as limits."""
        return EnvironmentResourceCapabilities(
            cpu_limit=True, memory_limit=True, fractional_cpus=True
        )

    def _validate_definition(self) -> None:
        require_agent_environment_definition(
            self.environment_dir, docker_image=self.task_env_config.docker_image
        )
        dockerfile = self.environment_dir / "Dockerfile"
        if not self.task_env_config.docker_image and not dockerfile.exists():
            raise ValueError(
                f"{self.environment_dir} defines a docker-compose environment; RockEnvironment"
                " runs one container: set [environment].docker_image or add a Dockerfile"
            )

    # ------------------------------------------------------------------ lifecycle

    async def start(self, force_build: bool) -> None:
        """Create the sandbox from the task's image (built first if need be)."""
        if self._sandbox is not None:
            raise RuntimeError(f"environment {self.session_id} is already started")
        image = await self._image(force_build)
        sandbox = Sandbox(self._config(image), cluster=_cluster.get())
        await sandbox.start()
        try:
            self._sandbox = sandbox
            probe = await sandbox.arun(
                "id -un && id -u && { command -v bash >/dev/null 2>&1 && echo bash || echo sh; }",
                check=True,
            )
            name, uid, found = probe.output.split()[-3:]
            self._who, self._shell = (name, uid), found
            # Harbor's log folders (/logs/agent, /logs/verifier, ...): a mounting provider
            # binds them, every other one makes them.
            made = await self.ensure_dirs(self._mount_targets(writable_only=True))
            if made is not None and made.return_code != 0:
                raise RuntimeError(f"cannot make Harbor's folders in the sandbox: {made.stderr}")
            await self._upload_environment_dir_after_start()
        except BaseException:
            self._sandbox = None
            with anyio.CancelScope(shield=True):
                await sandbox.delete()
            raise

    async def stop(self, delete: bool) -> None:
        """Delete the sandbox (``delete=False``: stop it, keeping its files)."""
        sandbox, self._sandbox = self._sandbox, None
        self._idle.clear()
        if sandbox is None:
            return
        with anyio.CancelScope(shield=True):
            if delete:
                await sandbox.delete()
            else:
                await sandbox.stop()

    def _config(self, image: str) -> SandboxConfig:
        options = self.options
        cpus = self._resource_limit_value("cpu", auto_mode=ResourceMode.LIMIT)
        memory_mb = self._resource_limit_value("memory", auto_mode=ResourceMode.LIMIT)
        return SandboxConfig(
            image=image,
            cpus=float(cpus) if cpus else 1.0,
            memory=f"{memory_mb}m" if memory_mb else "1g",
            network=not self._network_disabled,
            env=self._startup_env(),
            workdir=self.task_env_config.workdir or "",
            labels={"harbor.session": self.session_id},
            pull=options.pull if isinstance(options, RockEnvironmentOptions) else "missing",
        )

    async def _image(self, force_build: bool) -> str:
        """The task's prebuilt image, or the tag of one built from its Dockerfile."""
        prebuilt = self.task_env_config.docker_image
        if prebuilt and should_use_prebuilt_docker_image(
            self.environment_dir, docker_image=prebuilt, force_build=force_build
        ):
            return str(prebuilt)
        tag = shell.image_tag(self.environment_name, self.environment_id)
        cluster = _cluster.get()
        try:
            if cluster is not None:
                await cluster.build_image(self.environment_dir, tag)
            else:
                async with open_cluster(["local"]) as local:
                    await local.build_image(self.environment_dir, tag)
        except BadRequest as exc:
            # A Dockerfile that does not build: Harbor does not retry this one.
            raise SandboxBuildFailedError(str(exc)) from exc
        return tag

    # ------------------------------------------------------------------ commands

    def _require_sandbox(self) -> Sandbox:
        if self._sandbox is None:
            raise RuntimeError(f"environment {self.session_id} is not running: call start() first")
        return self._sandbox

    @contextlib.asynccontextmanager
    async def _session(self, sandbox: Sandbox) -> AsyncIterator[str]:
        """An idle session of the sandbox, given back after a command that ended normally."""
        if self._idle:
            name = self._idle.pop()
        else:
            self._sessions += 1
            name = await sandbox.create_session(f"harbor-{self._sessions}")
        try:
            yield name
        except BaseException:
            # Cancelled or failed under a command: end the session's shell, and with it the
            # command, rather than leave it running (bounded, and shielded from the cancel).
            with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_TIMEOUT):
                with contextlib.suppress(RockError):
                    await sandbox.close_session(name)
            raise
        if self._sandbox is sandbox and name not in self._closed:
            self._idle.append(name)

    async def exec(
        self,
        command: str,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout_sec: int | None = None,
        user: str | int | None = None,
    ) -> HarborExecResult:
        """Run `command` with the task's shell on a session; stdout and stderr apart."""
        sandbox = self._require_sandbox()
        prefix = shell.user_prefix(self._resolve_user(user), self._who)
        callback = self._output_callback()
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

        async def on_output(chunk: bytes) -> None:
            text = decoder.decode(chunk)
            if text and callback is not None:
                await callback(text, "stdout")

        async with self._session(sandbox) as session:
            errors = shell.stderr_path(session)
            line = shell.exec_line(
                command,
                shell=self._shell,
                stderr_file=errors,
                cwd=cwd or self.task_env_config.workdir,
                env=self._merge_env(env),
                user=prefix,
            )
            result = await sandbox.arun(
                line,
                session,
                timeout=timeout_sec or None,
                output_limit=MAX_DATA,
                on_output=on_output if callback is not None else None,
            )
            if result.session_closed:
                self._closed.add(session)
            stderr = await self._stderr(sandbox, errors)
        if result.timed_out:
            raise RuntimeError(f"Command timed out after {timeout_sec} seconds")
        if callback is not None and stderr:
            await callback(stderr, "stderr")
        exit_code = result.exit_code if result.exit_code is not None else -1
        return HarborExecResult(stdout=result.output, stderr=stderr, return_code=exit_code)

    @staticmethod
    async def _stderr(sandbox: Sandbox, path: str) -> str:
        """The stderr file of the latest exec; cut to `MAX_DATA` bytes, as stdout is."""
        try:
            data = await sandbox.read_file(path)
        except FileNotFound:
            return ""
        except BadRequest:  # more than read_file returns: its start, never a failed exec
            data = (await sandbox.execute(["head", "-c", str(MAX_DATA), path])).stdout_bytes
        return data.decode("utf-8", errors="replace")

    # ------------------------------------------------------------------ files

    async def upload_file(self, source_path: Path | str, target_path: str) -> None:
        """Copy a local file to `target_path` (its parent folders are made)."""
        await self._require_sandbox().upload(source_path, target_path)

    async def upload_dir(self, source_dir: Path | str, target_dir: str) -> None:
        """Copy a local folder's contents into `target_dir`, merged with what is there."""
        await self._require_sandbox().upload(source_dir, target_dir)

    async def download_file(self, source_path: str, target_path: Path | str) -> None:
        """Copy a file of the sandbox to the local `target_path`."""
        sandbox = self._require_sandbox()
        Path(target_path).parent.mkdir(parents=True, exist_ok=True)
        await sandbox.download(source_path, target_path)

    async def download_dir(self, source_dir: str, target_dir: Path | str) -> None:
        """Copy a folder's contents into the local `target_dir`, overwriting files there."""
        sandbox = self._require_sandbox()
        target = Path(target_dir)
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent) as staging:
            copied = os.path.join(staging, "copy")
            await sandbox.download(source_dir, copied)
            await anyio.to_thread.run_sync(
                lambda: shutil.copytree(copied, target, symlinks=True, dirs_exist_ok=True)
            )
