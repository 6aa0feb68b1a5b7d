"""Build an image from a local build-context folder on a cluster's hosts (`build_image`).

The folder is walked once, then streamed as a tar archive (`_local`, as an upload is) to each
host's agent, which builds the image with its engine: no registry is involved, so a base image
that is on the host is all a build needs.

Rules:
- Arguments are checked before anything is sent: a wrong type or an empty tag is `BadRequest`
  naming the argument; a missing context folder or Dockerfile is `FileNotFound`. The tag's
  grammar and ownership are the agent's to check (as a commit's are).
- Every host builds at once, each from its own stream of the same walked tree. When some hosts
  fail, the others' images stay built, and the error raised is the first failing host's error
  class (its details kept), its message naming every failing host, as `warm_image`'s is.
- By default the hosts whose link is up now build; `hosts` names others (each must be one of
  the cluster's: a host whose link is down fails with `HostUnavailable`).
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Sequence

import anyio

from rock_core import AgentConnection, BadRequest, Cluster, FileNotFound, HostUnavailable, RockError
from rock_core.protocol import BuildImage, BuildReply, ImageInfo

from ._local import Tree, local_error, tar_stream, walk
from ._streamed import call_streamed

log = logging.getLogger("rock_sdk.build")


def _context_folder(context: object) -> str:
    path = os.fspath(context) if isinstance(context, str | os.PathLike) else None
    if not isinstance(path, str):
        raise BadRequest(
            "build_image: context must be a local folder (str or os.PathLike), "
            f"not {type(context).__name__}"
        )
    if not path or "\0" in path:
        raise BadRequest(f"build_image: context {path!r} is not a path")
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise local_error(exc, path) from exc
    if not stat.S_ISDIR(mode):
        raise BadRequest(f"build_image: context {path} is not a folder")
    return path


def _dockerfile(folder: str, dockerfile: object) -> str:
    if not isinstance(dockerfile, str) or not dockerfile.strip():
        raise BadRequest(
            "build_image: dockerfile must be a path inside the context (a non-empty str), "
            f"not {dockerfile!r}"
        )
    path = os.path.join(folder, dockerfile)
    if not os.path.isfile(path):
        raise FileNotFound(f"build_image: no Dockerfile {dockerfile!r} in the context {folder}")
    return dockerfile


def _targets(cluster: Cluster, hosts: Sequence[str] | None) -> list[str]:
    known = cluster.hosts
    if hosts is None:
        up = [host_id for host_id, host in known.items() if host.state == "connected"]
        if not up:
            raise HostUnavailable("build_image: no host of the cluster is connected now")
        return up
    if isinstance(hosts, str) or not all(isinstance(h, str) for h in hosts):
        raise BadRequest("build_image: hosts must be a list of host ids (str)")
    if not hosts:
        raise BadRequest("build_image: hosts is empty; give None for every connected host")
    unknown = [h for h in hosts if h not in known]
    if unknown:
        raise BadRequest(
            f"build_image: no host {unknown[0]!r} in this cluster (hosts: {', '.join(known)})"
        )
    return list(dict.fromkeys(hosts))


async def build_image(
    cluster: Cluster,
    context: object,
    tag: object,
    *,
    dockerfile: object = "Dockerfile",
    hosts: Sequence[str] | None = None,
) -> dict[str, ImageInfo]:
    """Build image `tag` from the local folder `context` on every connected host (or `hosts`);
    the built image by host id. See the module's rules for the errors."""
    folder = _context_folder(context)
    if not isinstance(tag, str) or not tag.strip():
        raise BadRequest(f"build_image: tag must be an image name such as 'me/app:1', not {tag!r}")
    name = _dockerfile(folder, dockerfile)
    targets = _targets(cluster, hosts)
    tree = await anyio.to_thread.run_sync(walk, folder, ".", abandon_on_cancel=True)
    built: dict[str, ImageInfo] = {}
    failures: dict[str, RockError] = {}

    async def build_on(host_id: str) -> None:
        try:
            built[host_id] = await _build_on(cluster, host_id, tree, tag, name)
        except RockError as exc:
            failures[host_id] = exc

    async with anyio.create_task_group() as tg:
        for host_id in targets:
            tg.start_soon(build_on, host_id)
    if failures:
        first = next(host_id for host_id in targets if host_id in failures)
        message = "; ".join(f"host {h}: {failures[h]}" for h in targets if h in failures)
        error = type(failures[first])(message, **failures[first].details)
        raise error from failures[first]
    return {host_id: built[host_id] for host_id in targets}


async def _build_on(cluster: Cluster, host_id: str, tree: Tree, tag: str, name: str) -> ImageInfo:
    reply = await build_on(cluster.hosts[host_id].link(), tree, tag, name)
    log.debug("built image %s on host %s", tag, host_id, extra={"output": reply.output})
    return reply.image


async def build_on(conn: AgentConnection, tree: Tree, tag: str, dockerfile: str) -> BuildReply:
    """Build `tag` on one agent from the walked context `tree`; the agent's reply."""
    conn.require("build", "build images")
    request = BuildImage(tag=tag, dockerfile=dockerfile)
    return await call_streamed(
        conn, request, lambda: tar_stream(tree), BuildReply, f"the build of {tag}"
    )


__all__ = ["build_image", "build_on"]
