"""A swerex-remote endpoint in front of one sandbox: SWE-agent's ``remote`` deployment, and
SWE-ReX's `RemoteRuntime`, drive a sandbox of the kit as if it were SWE-ReX's own server.

    async with Sandbox(SandboxConfig(image="python:3.11")) as sb:
        async with serve_swerex(sb, api_key="secret") as endpoint:
            ...  # RemoteRuntime(host=endpoint.url, auth_token="secret")

or, as a command that starts a sandbox and serves it until interrupted (then deletes it):
``python -m rock_sdk.integrations.swerex --image python:3.11 --port 8000 --api-key K``.

Rules:
- The routes, bodies, the ``X-API-Key`` header and the error replies are swe-rex 1.4.0's
  (`swerex/server.py`): a wrong or missing key is 401, a body that is not the route's message
  is 422, an error the client should raise is 511 with the class it rebuilds
  (`swerex_wire`), anything else is JSON ``{"detail": ...}`` as the client expects. A retried
  request (same ``X-Request-ID`` as the last one) gets the last reply again.
- What a request does to the sandbox is `swerex_runtime.SwerexRuntime`; this module is only
  HTTP (aiohttp's server, which the kit already has through aiodocker, so asyncio only).
- The endpoint listens on loopback unless told otherwise; it runs in the caller, so over an
  SSH cluster it reaches the sandbox over the cluster's existing link.
- Leaving `serve_swerex` stops listening and closes the sessions it opened (the sandbox is the
  caller's); ``/close`` closes those sessions and keeps serving.
"""

from __future__ import annotations

import argparse
import hmac
import signal
import sys
import tempfile
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import sniffio
from aiohttp import BodyPartReader, web

from rock_core import BadRequest, RockError
from rock_core.protocol import MAX_DATA
from rock_sdk import Sandbox, SandboxConfig, open_cluster

from .swerex_runtime import DEFAULT_OUTPUT_LIMIT, SwerexRuntime, log
from .swerex_wire import (
    SWEREX_ERROR,
    Action,
    CloseSession,
    Command,
    CreateSession,
    PayloadError,
    ReadFile,
    RemoteError,
    WriteFile,
    decode,
    remote_error_of,
)

API_KEY_HEADER = "X-API-Key"
MAX_BODY = 64 << 20  # a JSON request (write_file's content); uploads stream past it

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class SwerexEndpoint:
    """Where a running endpoint listens: give `host` (with the port: `url`) and the API key to
    SWE-ReX's `RemoteRuntime` or SWE-agent's ``remote`` deployment."""

    host: str
    port: int
    sandbox: Sandbox

    @property
    def url(self) -> str:
        """``http://host:port``."""
        return f"http://{self.host}:{self.port}"


@asynccontextmanager
async def serve_swerex(
    sandbox: Sandbox,
    *,
    api_key: str,
    port: int = 0,
    host: str = "127.0.0.1",
    output_limit: int = DEFAULT_OUTPUT_LIMIT,
) -> AsyncIterator[SwerexEndpoint]:
    """Serve `sandbox` over the swerex-remote protocol at `host`:`port` (0: any free port).

    Requests must carry `api_key` in the ``X-API-Key`` header. `output_limit` caps the output a
    command returns (the rest is in a file of the sandbox, as for `Sandbox.arun`).
    """
    if not isinstance(sandbox, Sandbox):
        raise BadRequest(f"serve_swerex serves a rock_sdk.Sandbox, got {sandbox!r}")
    if not isinstance(api_key, str) or not api_key:
        raise BadRequest("serve_swerex needs a non-empty api_key (SWE-ReX's auth_token)")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise BadRequest(f"port must be between 0 and 65535, got {port!r}")
    if isinstance(output_limit, bool) or not isinstance(output_limit, int):
        raise BadRequest(f"output_limit must be a number of bytes, got {output_limit!r}")
    if not 1 <= output_limit <= MAX_DATA:
        raise BadRequest(f"output_limit must be between 1 and {MAX_DATA} bytes, got {output_limit}")
    if sniffio.current_async_library() != "asyncio":
        raise BadRequest("serve_swerex runs on asyncio (its HTTP server is aiohttp's)")
    runtime = SwerexRuntime(sandbox, output_limit=output_limit)
    runner = web.AppRunner(_application(runtime, api_key), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            raise BadRequest(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        bound_host, bound_port = runner.addresses[0][:2]
        yield SwerexEndpoint(host=str(bound_host), port=int(bound_port), sandbox=sandbox)
    finally:
        with anyio.CancelScope(shield=True):
            await runner.cleanup()
            await runtime.aclose()


def _application(runtime: SwerexRuntime, api_key: str) -> web.Application:
    app = web.Application(
        middlewares=[_authenticate(api_key), _replay(), _errors], client_max_size=MAX_BODY
    )

    def route(kind: Any, call: Callable[[Any], Awaitable[dict[str, Any]]]) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            return web.json_response(await call(decode(await request.read(), kind)))

        return handle

    async def is_alive(request: web.Request) -> web.StreamResponse:
        return web.json_response(runtime.is_alive())

    async def close(request: web.Request) -> web.StreamResponse:
        return web.json_response(await runtime.close())

    async def upload(request: web.Request) -> web.StreamResponse:
        return web.json_response(await _upload(runtime, request))

    app.router.add_get("/is_alive", is_alive)
    app.router.add_post("/create_session", route(CreateSession, runtime.create_session))
    app.router.add_post("/run_in_session", route(Action, runtime.run_in_session))
    app.router.add_post("/close_session", route(CloseSession, runtime.close_session))
    app.router.add_post("/execute", route(Command, runtime.execute))
    app.router.add_post("/read_file", route(ReadFile, runtime.read_file))
    app.router.add_post("/write_file", route(WriteFile, runtime.write_file))
    app.router.add_post("/upload", upload)
    app.router.add_post("/close", close)
    return app


def _authenticate(api_key: str) -> Any:
    expected = api_key.encode()

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.headers.get(API_KEY_HEADER, "").encode()
        if not hmac.compare_digest(given, expected):
            return web.json_response({"detail": "Invalid API Key"}, status=401)
        return await handler(request)

    return authenticate


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RemoteError as exc:
        return web.json_response(exc.body(), status=511)
    except PayloadError as exc:
        detail = f"invalid {request.path[1:]} request: {exc}"
        return web.json_response({"detail": detail}, status=422)
    except web.HTTPException as exc:  # no such route, wrong method, body too large
        return web.json_response({"detail": exc.reason}, status=exc.status)
    except RockError as exc:
        return web.json_response(remote_error_of(exc).body(), status=511)
    except Exception as exc:  # a bug of ours: the client still gets an error it can raise
        log.exception("swerex endpoint: %s %s failed", request.method, request.path)
        error = RemoteError(SWEREX_ERROR, f"{type(exc).__name__}: {exc}")
        return web.json_response(error.body(), status=511)


def _replay() -> Any:
    """The last reply, kept for a client that retries it (SWE-ReX's ``X-Request-ID``)."""
    last: dict[str, tuple[bytes, int]] = {}

    @web.middleware
    async def replay(request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = request.headers.get("X-Request-ID")
        if request_id and request_id in last:
            body, status = last[request_id]
            return web.Response(body=body, status=status, content_type="application/json")
        response = await handler(request)
        if request_id and isinstance(response, web.Response) and response.body is not None:
            last.clear()
            last[request_id] = (bytes(response.body), response.status)  # type: ignore[arg-type]
        return response

    return replay


async def _upload(runtime: SwerexRuntime, request: web.Request) -> dict[str, Any]:
    """The multipart form of ``/upload``: ``file``, then ``target_path`` and ``unzip``."""
    if not request.content_type.startswith("multipart/"):
        raise PayloadError("upload takes a multipart form (file, target_path, unzip)")
    fields: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="rock-swerex-") as folder:
        received = Path(folder) / "received"
        got_file = False
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or part.name is None:
                raise PayloadError("upload takes a flat multipart form")
            if part.name == "file":
                with received.open("wb") as sink:
                    while chunk := await part.read_chunk():
                        sink.write(chunk)
                got_file = True
            else:
                fields[part.name] = await part.text()
        target = fields.get("target_path", "")
        if not got_file or not target:
            raise PayloadError("upload needs the fields 'file' and 'target_path'")
        if fields.get("unzip", "false").lower() not in ("true", "1"):
            return await runtime.upload(received, target)
        unpacked = Path(folder) / "unpacked"
        try:
            await anyio.to_thread.run_sync(_unzip, received, unpacked)
        except zipfile.BadZipFile as exc:
            raise RemoteError("zipfile.BadZipFile", f"upload to {target}: {exc}") from None
        return await runtime.upload(unpacked, target)


def _unzip(archive: Path, folder: Path) -> None:
    folder.mkdir()
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(folder)  # member names are made safe (no absolute or '..' paths)


# ---------------------------------------------------------------------- the command


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m rock_sdk.integrations.swerex",
        description="Start a sandbox and serve it to SWE-ReX / SWE-agent until interrupted.",
    )
    parser.add_argument("--image", default="python:3.11", help="the sandbox's image")
    parser.add_argument(
        "--hosts", nargs="+", default=["local"], help="cluster hosts (local, ssh://user@host)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (0: any)")
    parser.add_argument("--api-key", required=True, help="the key clients send as X-API-Key")
    return parser


async def _serve(options: argparse.Namespace) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with (
            open_cluster(options.hosts) as cluster,
            Sandbox(SandboxConfig(image=options.image), cluster=cluster) as sandbox,
            serve_swerex(
                sandbox, api_key=options.api_key, port=options.port, host=options.host
            ) as endpoint,
        ):
            print(f"serving sandbox {sandbox.sandbox_id} at {endpoint.url}", flush=True)
            async for _ in signals:
                break
    print("stopped; the sandbox is deleted", flush=True)


def main(argv: list[str] | None = None) -> int:
    """The command: serve a new sandbox until SIGINT or SIGTERM, then delete it."""
    options = _parser().parse_args(argv)
    try:
        anyio.run(_serve, options)
    except RockError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


__all__ = ["SwerexEndpoint", "main", "serve_swerex"]

if __name__ == "__main__":
    sys.exit(main())
