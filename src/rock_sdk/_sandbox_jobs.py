"""`Sandbox.spawn`, `Sandbox.job` and `Sandbox.jobs`: background jobs of a sandbox (these
functions are the methods: `Sandbox` binds them; the jobs themselves are `_jobs`'s).

Rules:
- They reach the sandbox through its own `_call` (its agent link, followed across reconnects),
  so a handle made here works as long as the sandbox object does.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

from rock_core.protocol import Reply, Request

from . import _jobs
from ._jobs import DEFAULT_JOB_OUTPUT, Job, JobInfo

R = TypeVar("R", bound=Reply)


class _Sandbox(Protocol):
    @property
    def sandbox_id(self) -> str: ...

    async def _call(self, request: Request, expect: type[R]) -> R: ...


async def spawn(
    self: _Sandbox,
    command: str,
    *,
    job_id: str | None = None,
    output_limit: int = DEFAULT_JOB_OUTPUT,
) -> Job:
    """Start `command` as a background job that outlives this program (`docs/jobs.md`)."""
    return await _jobs.spawn(
        self._call, self.sandbox_id, command, job_id=job_id, output_limit=output_limit
    )


def job(self: _Sandbox, job_id: str) -> Job:
    """A handle on the background job `job_id` (spawned by any program)."""
    return Job(self._call, self.sandbox_id, _jobs.check_job_id(job_id))


async def jobs(self: _Sandbox) -> list[JobInfo]:
    """The sandbox's background jobs, oldest first."""
    return await _jobs.list_jobs(self._call, self.sandbox_id)


__all__ = ["job", "jobs", "spawn"]
