"""A socket made inside a sandbox's network namespace when that namespace belongs to a user
namespace of the agent's own user (rootless Podman), for an agent that is not root.

Rules:
- A process may enter such a network namespace only from inside its user namespace (where the
  agent's user holds every capability), and only a single-threaded process may enter a user
  namespace. So the socket is made in a child forked for it: the child, single-threaded,
  enters the user namespace and then the network namespace, makes the socket, hands it to the
  parent over a socket pair (``SCM_RIGHTS``) and exits at once (``os._exit``: it runs no
  Python cleanup of the parent's).
- The child's failure comes back as the exception it raised (an `OSError` keeps its errno), so
  the caller translates it as it does one raised in its own thread (`_netns`).
- Used only when needed (`needs_userns`): an agent that is root, or shares the sandbox's user
  namespace (Docker), enters the network namespace from a thread, as before.
"""

from __future__ import annotations

import ctypes
import os
import pickle
import socket
from collections.abc import Callable

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def needs_userns(pid: int) -> bool:
    """True if this process must enter the user namespace of `pid` to enter its network."""
    if os.geteuid() == 0:
        return False
    try:
        return os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user")
    except OSError:
        return False  # gone or not ours: entering the network namespace says which


def _enter(pid: int, kind: str, flag: int) -> None:
    fd = os.open(f"/proc/{pid}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, flag) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns {kind}: {os.strerror(errno)}")
    finally:
        os.close(fd)


def _child(pid: int, make: Callable[[], socket.socket], channel: socket.socket) -> None:
    try:
        _enter(pid, "user", CLONE_NEWUSER)
        _enter(pid, "net", CLONE_NEWNET)
        made = make()
        socket.send_fds(channel, [b"ok"], [made.fileno()])
    except BaseException as exc:  # any failure goes back to the parent, as itself
        try:
            channel.sendall(b"no" + pickle.dumps(exc))
        except BaseException:  # nothing is left to tell it with
            pass


def socket_in_userns(pid: int, make: Callable[[], socket.socket]) -> socket.socket:
    """The socket `make` creates inside the network namespace of `pid`, made in a child that
    entered `pid`'s user namespace first; the child's error raised. Blocking: call it from a
    thread."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        forked = os.fork()
        if forked == 0:  # the child: single-threaded from here on
            try:
                parent.close()
                _child(pid, make, child)
            finally:
                os._exit(0)
        child.close()
        try:
            message, fds, _, _ = socket.recv_fds(parent, 1 << 16, 1)
            while message.startswith(b"no") and (more := parent.recv(1 << 16)):
                message += more
        finally:
            os.waitpid(forked, 0)
    finally:
        parent.close()
        child.close()
    if message == b"ok" and fds:
        return socket.socket(fileno=fds[0])
    for fd in fds:
        os.close(fd)
    if message.startswith(b"no"):
        error = pickle.loads(message[2:])  # from our own child: trusted
        if isinstance(error, BaseException):
            raise error
    raise OSError(f"the child making a socket in the namespace of process {pid} said nothing")


__all__ = ["needs_userns", "socket_in_userns"]
