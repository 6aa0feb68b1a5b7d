"""Enforcing a sandbox's `NetworkPolicy` on Docker: nftables rules in its network namespace,
and its DNS filter.

Rules:
- A policy sandbox runs on the bridge without CAP_NET_ADMIN (nor NET_RAW: `_docker_json`), so
  its root cannot change the rules, its routes or its interfaces. The rules are loaded after
  its container starts and before the create (or start) is answered: until then only the
  keep-alive runs in it. A start the rules cannot follow is undone (the container is removed
  on create, stopped on start, and its DNS filter closed): a policy is never silently missing.
- Loading (`_load`): an agent running as root enters the namespace itself (``nsenter --net``
  with the host's ``nft``, a few milliseconds). Any other agent cannot, so it runs a
  short-lived helper container in the sandbox's namespace (``NetworkMode: container:ID``,
  only CAP_NET_ADMIN) from the sandbox's own image (present by now), with the host's ``nft``
  and the libraries it links bind-mounted read-only and run through the host's loader (about
  0.4 s; no image to build or pull). A host without ``nft`` refuses policies (`BadRequest`).
- The rules live in the namespace and die with it; a restarted container has a new one, so a
  start applies the policy again. The DNS filters are this process's: an agent that starts
  finds running policy sandboxes it holds no filter for and applies their policy again
  (`restore`), which opens a filter and points the rules at it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import shutil
from collections.abc import Awaitable, Callable
from typing import Any

import aiodocker
import anyio

from rock_core import BadRequest, RockError, SandboxFailed
from rock_core.protocol import NetworkPolicy, SandboxInfo, SandboxSpec

from ._dns_filter import DnsFilter
from ._docker_json import sandbox_info
from ._engine import Bounds, engine_call
from ._netpolicy import ruleset, targets_of

log = logging.getLogger("rock_agent")

HELPER_ROOT = "/rock-nft"
_LIB = re.compile(r"(/\S+)")


def policy_of(spec: SandboxSpec | None) -> NetworkPolicy | None:
    """The policy of a spec, if it has one."""
    if spec is not None and isinstance(spec.network, NetworkPolicy):
        return spec.network
    return None


def _gateway(attrs: dict[str, Any]) -> str:
    networks = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
    for settings in networks.values():
        if isinstance(settings, dict) and settings.get("Gateway"):
            return str(settings["Gateway"])
    return ""


class NetworkEnforcer:
    """The policies of one Docker runtime's sandboxes, and their DNS filters."""

    def __init__(
        self,
        docker: aiodocker.Docker,
        bounds: Bounds,
        find: Callable[[str], Awaitable[Any]],
        listing: Callable[[], Awaitable[list[SandboxInfo]]],
    ) -> None:
        self.docker = docker
        self.bounds = bounds
        self._find = find  # a sandbox's container (aiodocker), freshly inspected
        self._listing = listing  # every sandbox of the runtime
        self.filters: dict[str, DnsFilter] = {}
        self.as_root = os.geteuid() == 0
        self._binds: list[str] | None = None

    async def enforce(
        self,
        sandbox_id: str,
        undo: Callable[[], Awaitable[object]],
        spec: SandboxSpec | None = None,
    ) -> None:
        """Apply the policy of a container just started, if it has one (`spec`, if given, says
        whether: a create without a policy costs no inspect); if that fails, `undo` the start
        (shielded) and raise."""
        if spec is not None and policy_of(spec) is None:
            return
        try:
            attrs = (await self._find(sandbox_id))._container
            policy = policy_of(sandbox_info(attrs, -1).spec)
            if policy is not None:
                await self.apply(sandbox_id, attrs, policy)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.forget(sandbox_id)  # its DNS filter, if one was opened for it
                with contextlib.suppress(RockError):
                    await undo()
            raise

    async def restore(self) -> list[str]:
        """Apply again the policies of running sandboxes whose DNS filter this process does not
        hold (an agent that started finds them); the ids restored. One that fails is logged."""
        restored = []
        for info in await self._listing():
            policy = policy_of(info.spec)
            if info.state != "running" or policy is None or not policy.dns:
                continue
            if info.sandbox_id in self.filters:
                continue
            try:
                attrs = (await self._find(info.sandbox_id))._container
                await self.apply(info.sandbox_id, attrs, policy)
            except RockError as exc:
                log.warning("could not restore the network policy of %s: %s", info.sandbox_id, exc)
                continue
            restored.append(info.sandbox_id)
        return restored

    async def apply(self, sandbox_id: str, attrs: dict[str, Any], policy: NetworkPolicy) -> None:
        """Load the policy's rules into the running container `attrs` (its inspect record)."""
        pid = int((attrs.get("State") or {}).get("Pid") or 0)
        if pid <= 0:
            raise SandboxFailed(f"sandbox {sandbox_id} is not running: its policy cannot apply")
        targets = await targets_of(policy)
        dns = None
        if policy.dns:
            gateway = _gateway(attrs)
            if not gateway:
                raise SandboxFailed(f"sandbox {sandbox_id} has no bridge gateway for its DNS")
            dns_filter = self.filters.get(sandbox_id)
            if dns_filter is None or dns_filter.address != gateway:
                await self.forget(sandbox_id)
                dns_filter = await DnsFilter(gateway, policy.dns).open()
                self.filters[sandbox_id] = dns_filter
            dns = (gateway, dns_filter.port)
        script = ruleset(targets, dns)
        if self.as_root and shutil.which("nsenter") and shutil.which("nft"):
            await self._load_here(sandbox_id, pid, script)
        else:
            await self._load_in_helper(sandbox_id, str(attrs.get("Id") or ""), attrs, script)

    async def forget(self, sandbox_id: str) -> None:
        """Close the sandbox's DNS filter (it is gone, or about to get a new one)."""
        dns_filter = self.filters.pop(sandbox_id, None)
        if dns_filter is not None:
            await dns_filter.aclose()

    async def _load_here(self, sandbox_id: str, pid: int, script: str) -> None:
        argv = ["nsenter", f"--net=/proc/{pid}/ns/net", "nft", "-f", "-"]
        with anyio.fail_after(self.bounds.control):
            done = await anyio.run_process(argv, input=script.encode(), check=False)
        if done.returncode != 0:
            why = done.stderr.decode(errors="replace").strip()
            raise SandboxFailed(f"cannot apply the network policy of sandbox {sandbox_id}: {why}")

    async def _helper_binds(self) -> list[str]:
        """Read-only binds of the host's nft and every library it links (with the loader)."""
        if self._binds is not None:
            return self._binds
        nft = shutil.which("nft") or shutil.which("nft", path="/usr/sbin:/sbin")
        if nft is None:
            raise BadRequest(
                "this host cannot enforce a network policy: nft is not installed there "
                "(install the nftables package)"
            )
        done = await anyio.run_process(["ldd", nft], check=False)
        libs = _LIB.findall(done.stdout.decode(errors="replace"))
        binds = [f"{os.path.realpath(nft)}:{HELPER_ROOT}/nft:ro"]
        binds += [f"{os.path.realpath(p)}:{HELPER_ROOT}/lib/{os.path.basename(p)}:ro" for p in libs]
        self._binds = binds
        return binds

    async def _load_in_helper(
        self, sandbox_id: str, container_id: str, attrs: dict[str, Any], script: str
    ) -> None:
        binds = await self._helper_binds()
        loader = next((b.split(":")[1] for b in binds if "/ld-linux" in b), "")
        if not loader:
            raise BadRequest("this host cannot enforce a network policy: nft links no loader")
        config: dict[str, Any] = {
            "Image": str((attrs.get("Config") or {}).get("Image") or ""),
            "Entrypoint": [loader, "--library-path", f"{HELPER_ROOT}/lib", f"{HELPER_ROOT}/nft"],
            "Cmd": [script],
            "User": "0",
            "Labels": {"rock.helper": "network-policy"},
            "HostConfig": {
                "NetworkMode": f"container:{container_id}",
                "CapDrop": ["ALL"],
                "CapAdd": ["NET_ADMIN"],
                "Binds": binds,
                "SecurityOpt": ["no-new-privileges"],
            },
        }
        name = f"rock-netpol-{sandbox_id[:40]}-{secrets.token_hex(4)}"
        what = f"applying the network policy of sandbox {sandbox_id}"
        helper = None
        try:
            with engine_call(what, self.bounds.create):
                helper = await self.docker.containers.create(config, name=name)
                await helper.start()
                status = await helper.wait()
                code = int(status.get("StatusCode", -1))
                output = "" if code == 0 else "".join(await helper.log(stdout=True, stderr=True))
        finally:
            if helper is not None:
                with anyio.CancelScope(shield=True), contextlib.suppress(RockError):
                    with engine_call(f"removing the helper of {sandbox_id}", self.bounds.remove):
                        await helper.delete(force=True)
        if code != 0:
            raise SandboxFailed(
                f"cannot apply the network policy of sandbox {sandbox_id}: {output}"
            )


class NetworkPolicing:
    """What `DockerRuntime` gains from this module: its `network` enforcer, made on first
    use, and `restore_network` (of the `ContainerRuntime` seam)."""

    docker: aiodocker.Docker
    bounds: Bounds
    _network: NetworkEnforcer | None = None

    async def _container(self, sandbox_id: str) -> Any:
        raise NotImplementedError

    async def list_sandboxes(self, owner: str = "") -> list[SandboxInfo]:
        raise NotImplementedError

    @property
    def network(self) -> NetworkEnforcer:
        """The enforcer of this runtime's policies (and holder of their DNS filters)."""
        if self._network is None:
            self._network = NetworkEnforcer(
                self.docker, self.bounds, self._container, self.list_sandboxes
            )
        return self._network

    async def restore_network(self) -> list[str]:
        """Apply again the policies of running sandboxes this process holds no DNS filter for
        (an agent that started; docs/network.md); the ids restored."""
        return await self.network.restore()


__all__ = ["NetworkEnforcer", "NetworkPolicing", "policy_of"]
