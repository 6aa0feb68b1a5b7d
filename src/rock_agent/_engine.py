"""Engine API failures, translated into the `RockError` tree (one mapping for the agent)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import aiohttp
from aiodocker.exceptions import DockerError

from rock_core._errors import BadRequest, RockError, SandboxFailed, SandboxNotFound, TransportError


@contextlib.contextmanager
def engine_errors(what: str, *, not_found: type[RockError] = SandboxNotFound) -> Iterator[None]:
    """Translate Engine API failures of `what` into our error tree."""
    try:
        yield
    except DockerError as exc:
        message = exc.message if isinstance(exc.message, str) else str(exc.message)
        if exc.status == 404:
            raise not_found(f"{what}: {message}") from exc
        if exc.status == 409:
            raise BadRequest(f"{what}: {message}") from exc
        if exc.status == 400:
            raise BadRequest(f"{what}: {message}") from exc
        raise SandboxFailed(f"{what}: engine answered {exc.status}: {message}") from exc
    except (aiohttp.ClientConnectionError, FileNotFoundError, ConnectionError) as exc:
        raise TransportError(f"{what}: cannot reach the Docker engine: {exc}") from exc
    except aiohttp.ClientError as exc:
        raise TransportError(f"{what}: Docker engine request failed: {exc}") from exc


__all__ = ["engine_errors"]
