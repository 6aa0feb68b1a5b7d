"""`HostSource.from_slurm`'s reader: the nodes of the Slurm job this program runs in.

Rules:
- The node list is ``$SLURM_JOB_NODELIST`` (or the one given), expanded by Slurm itself:
  ``scontrol show hostnames LIST`` prints one node name a line. Slurm's compressed syntax
  (``gpu[01-04,07],cpu3``) is Slurm's to parse, never ours.
- A job's nodes do not change while it runs, so the source yields one snapshot and ends.
- Outside a Slurm job, without ``scontrol`` on PATH, or when it fails: `BadRequest` with what
  scontrol said. scontrol runs as a child process through anyio (no thread, no blocking).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Sequence

import anyio

from ._errors import BadRequest
from ._host_sets import HostItem, ToHost

NODELIST_ENV = "SLURM_JOB_NODELIST"


class SlurmReader:
    """Reads the nodes of a Slurm job (a `HostReader`); see the module's rules."""

    def __init__(self, *, nodelist: str | None, host: ToHost) -> None:
        if nodelist is not None and (
            not isinstance(nodelist, str) or not nodelist.strip() or "\x00" in nodelist
        ):
            raise BadRequest(f"nodelist must be None or a Slurm node list, got {nodelist!r}")
        self.nodelist = nodelist
        self.host = host

    def __repr__(self) -> str:
        return f"HostSource.from_slurm(nodelist={self.nodelist!r})"

    async def snapshots(self) -> AsyncIterator[Sequence[HostItem]]:
        """The job's nodes, once."""
        yield [self.host(name) for name in await job_nodes(self.nodelist)]


async def job_nodes(nodelist: str | None = None) -> list[str]:
    """The node names of `nodelist` (default: this job's), through ``scontrol``."""
    nodes = nodelist if nodelist is not None else os.environ.get(NODELIST_ENV, "")
    if not nodes.strip():
        raise BadRequest(
            f"not inside a Slurm job: ${NODELIST_ENV} is not set (run under sbatch or salloc, "
            "or pass nodelist=)"
        )
    command = ["scontrol", "show", "hostnames", nodes]
    try:
        done = await anyio.run_process(command, check=False, stderr=subprocess.PIPE)
    except OSError as exc:
        raise BadRequest(
            f"cannot run scontrol to expand the Slurm node list {nodes!r}: {exc.strerror or exc}"
        ) from exc
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip() or f"exit status {done.returncode}"
        raise BadRequest(f"scontrol show hostnames {nodes!r} failed: {said}")
    names = done.stdout.decode(errors="replace").split()
    if not names:
        raise BadRequest(f"scontrol show hostnames {nodes!r} printed no node")
    return names


__all__ = ["NODELIST_ENV", "SlurmReader", "job_nodes"]
