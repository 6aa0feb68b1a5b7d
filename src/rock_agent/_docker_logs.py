"""A container's log through the engine's logs API: its main process's stdout and stderr.

Rules:
- The engine sends the log of a container without a terminal multiplexed: frames of an 8-byte
  header (the stream: 1 stdout, 2 stderr; then the payload's size, big-endian) and the
  payload. `LogDemuxer` splits them with no I/O, whatever the read boundaries; a container
  with a terminal sends plain stdout.
- Pieces of one read from the same stream are joined, so a log of many short lines travels
  in few chunks; bytes are passed on exactly.
- The response is closed on every exit (errors and cancellation included), as archive
  responses are (`_archive`). Engine errors become our tree (`_engine.engine_errors`).
- With `follow` the engine ends the stream when the container stops; the stream has no
  overall bound (its reader bounds it).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import aiodocker

from ._engine import engine_errors
from ._runtime import OutputChunk, OutputStream

HEADER = 8
_STREAMS: dict[int, OutputStream] = {1: "stdout", 2: "stderr"}


class LogDemuxer:
    """Splits the engine's multiplexed log stream into chunks (sans-IO: feed bytes, get chunks)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[OutputChunk]:
        """The whole frames `data` completes, adjacent ones of one stream joined."""
        self._buffer += data
        found: list[OutputChunk] = []
        while len(self._buffer) >= HEADER:
            size = int.from_bytes(self._buffer[4:HEADER], "big")
            if len(self._buffer) < HEADER + size:
                break
            stream = _STREAMS.get(self._buffer[0], "stdout")  # 0 (stdin) never comes in a log
            payload = bytes(self._buffer[HEADER : HEADER + size])
            del self._buffer[: HEADER + size]
            if found and found[-1].stream == stream:
                found[-1] = OutputChunk(stream, found[-1].data + payload)
            elif payload:
                found.append(OutputChunk(stream, payload))
        return found

    @property
    def pending(self) -> int:
        """Bytes of an unfinished frame held."""
        return len(self._buffer)


def log_params(*, follow: bool, tail: int | None, since: float, timestamps: bool) -> dict[str, str]:
    """The logs API's query for these arguments (see `ReadLogs`)."""
    params = {
        "stdout": "1",
        "stderr": "1",
        "follow": "1" if follow else "0",
        "timestamps": "1" if timestamps else "0",
        "tail": "all" if tail is None else str(tail),
    }
    if since > 0:
        seconds = int(since)
        params["since"] = f"{seconds}.{min(999_999_999, round((since - seconds) * 1e9)):09d}"
    return params


async def read_logs(
    docker: aiodocker.Docker,
    find: Callable[[], Awaitable[Any]],
    sandbox_id: str,
    follow: bool,
    tail: int | None,
    since: float,
    timestamps: bool,
) -> AsyncGenerator[OutputChunk, None]:
    """The log of sandbox `sandbox_id` (its container, as `find()` gives it), in order."""
    container: dict[str, Any] = (await find())._container
    tty = bool((container.get("Config") or {}).get("Tty"))
    name = container.get("Id") or container.get("Name", "").lstrip("/")
    params = log_params(follow=follow, tail=tail, since=since, timestamps=timestamps)
    demuxer = LogDemuxer()
    with engine_errors(f"reading the logs of sandbox {sandbox_id}"):
        async with docker._query(
            f"containers/{name}/logs", method="GET", params=params, timeout=None
        ) as response:
            try:
                async for data in response.content.iter_any():
                    if tty:
                        yield OutputChunk("stdout", data)
                        continue
                    for chunk in demuxer.feed(data):
                        yield chunk
            finally:
                response.close()


__all__ = ["LogDemuxer", "log_params", "read_logs"]
