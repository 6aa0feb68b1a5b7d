"""What an agent needs to serve the protocol: the endpoint, its connections, peers and owners.

Every agent (the real `rock_agent` and the fakes of `rock_core.testing`) serves connections
through the same endpoint, so none can drift from the protocol's rules.

Rules:
- `serve_connection` runs one connection (handshake, framing, requests in reused worker tasks,
  `Cancel`, memory budget) against an `AgentHandler`, which only decides what each request does; it
  never raises. A handler's `RockError` becomes the request's `ErrorReply`.
- A request handler reaches its client through its `Connection` (send events, open an inbound
  byte stream, the `Principal` that may act on a sandbox) and knows who is at the other end
  from the transport's `Peer`.
- Byte streams go in `CHUNK_SIZE` chunks under credit: at most `WINDOW` in flight, paced by a
  `CreditGate`; `send_stream` sends one. Transports are `ByteStream`s; on asyncio a pair of
  pipes (an agent's stdio) is one through `open_pipe_stream`.
- Owners: `local_owner_alive` tells whether a local owner's process still runs; a lease
  (seconds after an owner's last message that its sandboxes are kept) is at most `MAX_LEASE`,
  checked with `is_seconds` and explained by `SECONDS_RULE`.
- `connection_refused` tells a connect that nothing listened for from one that failed.
- A unix socket connection is served as a `UnixStream` (see `_unix_stream` for why not anyio's).
"""

from ._channel import CHUNK_SIZE, WINDOW, ByteStream, CreditGate, send_stream
from ._endpoint import AgentHandler, Connection, Peer, Principal, serve_connection
from ._options import MAX_LEASE, SECONDS_RULE, is_seconds
from ._owner import local_owner_alive
from ._pipes import PipeStream, open_pipe_stream
from ._refused import connection_refused
from ._unix_stream import UnixStream

__all__ = [
    "CHUNK_SIZE",
    "MAX_LEASE",
    "SECONDS_RULE",
    "WINDOW",
    "AgentHandler",
    "ByteStream",
    "Connection",
    "CreditGate",
    "Peer",
    "PipeStream",
    "Principal",
    "UnixStream",
    "connection_refused",
    "is_seconds",
    "local_owner_alive",
    "open_pipe_stream",
    "send_stream",
    "serve_connection",
]
