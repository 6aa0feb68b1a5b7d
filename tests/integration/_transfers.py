"""Helpers shared by the transfer-edge tests (`test_transfer_edges`, `test_transfer_paths`)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from rock_core import Cluster
from rock_sdk import Sandbox, SandboxConfig

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
