"""The shell text a session writes, and the marker lines it reads back (no I/O here).

Rules:
- The shell's own stdout and stderr are /dev/null; the output pipe is held on fd 63 (`OUT`).
  Only three things ever write to it: the user's command (its stdout and stderr are fd 63 for
  that command only), the command's start line and its end line. Whatever the shell does on
  its own between commands (PROMPT_COMMAND, PS0, `set -v`/`set -x` of the kit's lines, DEBUG
  and ERR traps fired by the kit's lines, job notices) goes to /dev/null.
- Each command prints `<marker>s` when it starts and `<marker><status>` when it ends; the
  marker is 128 random bits made for that command, so no output can forge either line. The
  kit's line prints the start line just before it runs the text, once the shell has read the
  whole line (here-document included): bytes before it are noise (late output of earlier
  background jobs) and are dropped, and input sent after it can only reach the command.
- Every word the kit runs is quoted (`\\builtin printf` in bash, `\\command printf` in ash), so
  no alias or function of the user's can change it. The kit's lines run with xtrace and
  verbose off; the user's `set -x` and `set -v` are restored for the user's text only, by a
  prefix on its first line when they were on (bash's trace shows one level deeper, `++`, as
  the text is sourced).
- The command's text reaches the shell as one single-quoted word and is run by `.` of a
  here-document (bash; no job notices, same shell and state) or `eval` (ash). The text starts
  line 1 of what is run (after the prefix, if any), so line numbers in errors are the user's,
  and a syntax error's message quotes the user's line only.
- Bash reads its input without readline (`--noediting`): readline reads a pipe one byte per
  `read` (and a `select` each), which cost more than all the rest of the wrapper; without it
  bash reads what the pipe holds, and never more than the kit has written, as the kit writes
  nothing after a command line until its start line has come (interactive commands) or its
  end line (the others), but end lines at a timeout. Ash reads its script file the same way.
- Traps: ERR and EXIT work as in a terminal. Bash's `.` holds a DEBUG trap aside while it
  sources (unless `set -T`), so a DEBUG trap fires only within the command that sets it.
- `set -e` is the user's. Bash: a command that fails under it ends the shell, as in a
  terminal (the result then says the session closed, with the exit code and the output); a
  text whose *final* status is non-zero but spared by errexit (`[ -f x ] && y`) does not, as
  the kit's RETURN trap turns errexit off for the instant the kit's `.` returns, and back on
  after the end line. The kit holds the RETURN trap for this; a user's RETURN trap is kept
  aside and run for the user's own `.` and traced functions (`trap -p RETURN` shows the kit's
  while a command runs; a RETURN trap set inside a command also fires once as it ends). Ash
  has no RETURN trap: under `set -e` a command whose final status is non-zero ends its shell.
- Each command exports `ROCK_CMD=<session token>-<n>`: processes that leave the shell's tree
  (`(cmd &)`, `setsid`, daemons) are still found by it at a timeout or a close.
- History is off, so HISTFILE never receives the kit's lines.
- A command's stdin, stdout and stderr are its own: `exec >file` inside a command lasts until
  that command ends (it can no longer take the session's output away). Fd 63 is closed for
  the command.
"""

from __future__ import annotations

import secrets

from rock_core import BadRequest

OUT = 63  # the fd that holds the output pipe in the shell

# Busybox ash, interactive on a pipe, reads commands with fgets() and takes the EINTR of a
# finished background job's SIGCHLD for end of input, so it exits; given the pipe as a script
# file (/dev/stdin) it reads with a retrying read() instead. Bash needs no such help.
BOOT = (
    "if command -v bash >/dev/null 2>&1; then "
    "exec bash --norc --noprofile --noediting -i 2>/dev/null; fi; "
    "exec sh -i /dev/stdin 2>/dev/null"
)

# Runs at the end of every `.` while the user's text runs. At depth 0 it is the kit's own `.`
# returning: turn errexit off (noting it) so a spared final status cannot end the shell.
# Deeper, it is the user's `.` or a traced function: run the user's RETURN trap, if any.
_RETURN_HANDLER = (
    '{ [ "${#BASH_SOURCE[@]}" -eq 0 ] && __rock_e="$-." && \\builtin set +e; } >/dev/null 2>&1'
    ' || \\builtin eval "${__rock_rh-}"'
)
_BASH_SETUP = (
    "\\builtin set +H +o history +x\n"
    # Interactive bash says "exit" on stderr when it exits; that is not the command's output.
    'exit() { \\builtin set +o history; \\builtin exit "$@" 2>/dev/null; }\n'
    "__rock_h=" + "'" + _RETURN_HANDLER.replace("'", "'\\''") + "'\n"
    '__rock_arg3() { [ "${3-}" = "$__rock_h" ] || __rock_rh="${3-}"; }\n'
    # The user's text replaced the RETURN trap: keep theirs aside and put the kit's back.
    # Kept as text and `eval`ed at the top level where it is needed (a function would not see
    # the trap), so the command substitution is parsed only then, not with every command.
    "__rock_k='__rock_t=$(\\builtin trap -p RETURN); "
    '\\builtin eval "__rock_arg3 $__rock_t"; \\builtin trap -- "$__rock_h" RETURN\'\n'
    '\\builtin trap -- "$__rock_h" RETURN\n'
    # Around the user's -v and -x (the kit turns them off), first in the text it runs.
    "__rock_X='{ \\builtin set -'; __rock_Y='; } >/dev/null 2>&1; '\n"
)
_ASH_SETUP = "\\set +x\n__rock_X='\\set -'; __rock_Y='; '\n"


def setup(marker: bytes) -> bytes:
    """The first lines a new shell gets; it answers `<marker>10` (bash) or `<marker>0` (ash)."""
    # Ash parses the whole `if` first, and refuses bash's function named `exit`: bash's part
    # is one quoted word that only bash evaluates.
    return (
        b"PS1=''; PS2=''\n"
        b'if [ -n "${BASH_VERSION-}" ]; then eval '
        + quote(_BASH_SETUP)
        + b"\nelse\n"
        + _ASH_SETUP.encode()
        + b"fi\nexec "
        + _out()
        + b">&1 >/dev/null 2>&1\n"
        b"\\command printf '%s%d\\n' '" + marker + b'\' "${BASH_VERSION:+1}0" >&' + _out() + b"\n"
    )


def _out() -> bytes:
    return str(OUT).encode()


def quote(command: str) -> bytes:
    """Single-quote `command` for the shell, byte-exact."""
    data = command.encode("utf-8", "surrogateescape")
    if b"\x00" in data:
        raise BadRequest("a command cannot contain NUL bytes")
    return b"'" + data.replace(b"'", b"'\\''") + b"'"


def wrap(command: str, marker: bytes, token: str, *, interactive: bool, bash: bool) -> bytes:
    """The line that runs `command` in the session between its start and end lines.

    The shell has read all of the kit's bytes (the here-document too) before the line runs,
    and the start line is its first output: input sent after the start line can only reach
    the command.
    """
    out = _out()
    # Bash runs its builtins through `builtin` (a function may be named like one); ash looks
    # its special builtins (`set`, `export`, `eval`) up before functions.
    word, special = (b"\\builtin ", b"\\builtin ") if bash else (b"\\command ", b"\\")
    head = (
        b"__rock_c="
        + quote(command)
        + b"; __rock_m='"
        + marker
        + b"'; __rock_e=; case $- in *[vx]*) __rock_q=$-; "
        + special
        + b"set +vx; __rock_q=$__rock_X${__rock_q//[!vx]/}$__rock_Y;; *) __rock_q=;; esac; "
        + special
        + b"export ROCK_CMD='"
        + token.encode()
        + b"'; "
        + word
        + b"printf '%ss\\n' \"$__rock_m\" >&"
        + out
        + b"; "
    )
    end = word + b'printf \'%s%d\\n\' "$__rock_m" "$?" >&' + out
    # Both outputs go to the kit's descriptor, which the command itself does not keep open.
    redirect = b" >&" + out + b" 2>&" + out + (b"" if interactive else b" </dev/null") + b" " + out
    if not bash:
        return head + b'\\command eval "$__rock_q$__rock_c"' + redirect + b">&-; " + end + b"\n"
    # The here-document expands `$__rock_q$__rock_c` once (its delimiter is unquoted on
    # purpose); the result is the text to source, which is never expanded again.
    return (
        head + b"\\. /dev/fd/3 3<<__rock_eof" + redirect + b">&-; " + end + b"; "
        # A `.` that did not return through the kit's trap: the user replaced it. Keep theirs
        # aside (at the top level: a function would not see it) and put the kit's back.
        b"case $__rock_e in '') \\builtin eval \"$__rock_k\";; "
        b"*e*) \\builtin set -e;; esac\n"
        b"$__rock_q$__rock_c\n__rock_eof\n"
    )


def recovery_line(marker: bytes, *, bash: bool) -> bytes:
    """A line that prints `marker` and the last status (after an aborted command line)."""
    word = b"\\builtin" if bash else b"\\command"
    return word + b" printf '%s%d\\n' '" + marker + b'\' "$?" >&' + _out() + b"\n"


def new_marker() -> bytes:
    """A marker no command can guess."""
    return b"__rock_" + secrets.token_hex(16).encode() + b"_"


def find_start(buffer: bytearray | bytes, marker: bytes) -> int:
    """Where the output after `marker`'s start line begins, or -1."""
    line = marker + b"s\n"
    at = buffer.find(line)
    return -1 if at < 0 else at + len(line)


def find_end(buffer: bytearray | bytes, markers: list[bytes]) -> tuple[int, int, int, int] | None:
    """The earliest complete `marker<status>\\n`: (which marker, where, status, end)."""
    best: tuple[int, int, int, int] | None = None
    for index, marker in enumerate(markers):
        if not marker:
            continue
        at = buffer.find(marker)
        while at >= 0:
            newline = buffer.find(b"\n", at + len(marker))
            if newline < 0:
                break
            digits = bytes(buffer[at + len(marker) : newline])
            if digits.isdigit():
                if best is None or at < best[1]:
                    best = (index, at, int(digits), newline + 1)
                break
            at = buffer.find(marker, at + 1)
    return best


def held_back(buffer: bytearray | bytes, markers: list[bytes]) -> int:
    """How many bytes at the end of `buffer` may be the start of a marker line."""
    longest = 0
    for marker in markers:
        if not marker:
            continue
        window = max(0, len(buffer) - len(marker) - 16)
        at = buffer.rfind(marker[:1], window)
        while at >= 0:
            tail = bytes(buffer[at:])
            head, rest = tail[: len(marker)], tail[len(marker) :]
            if marker.startswith(head) and (not rest or rest.isdigit()):
                longest = max(longest, len(tail))
                break
            at = buffer.rfind(marker[:1], window, at)
    return longest


__all__ = [
    "BOOT",
    "OUT",
    "find_end",
    "find_start",
    "held_back",
    "new_marker",
    "quote",
    "recovery_line",
    "setup",
    "wrap",
]
