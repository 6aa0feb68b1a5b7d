"""The constraints of every wire value, as data, and the one mapping of their failures to errors.

Rules:
- Each constrained field of the protocol uses one of the `Annotated` types below: bounds,
  patterns and lengths are written here once, checked by msgspec when a message is decoded
  (on the agent) and when a request is validated before it is sent (in the core), so the SDK,
  the agent and the fakes cannot disagree about what is valid.
- Floats with bounds refuse NaN, and, unless a type says otherwise, infinity.
- `bad_request` turns a msgspec `ValidationError` (or a value msgspec cannot encode) into a
  `BadRequest` whose message names the field and says what a valid value looks like.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, TypeVar

import msgspec

from ._errors import BadRequest

MAX_SECONDS = 10 * 365 * 86400.0  # ten years: any longer time limit is a mistake
MAX_BYTES = 1 << 50  # one pebibyte
# The most bytes one message carries in its data (a file's content, a command's output kept in
# its reply): a frame (`_framing.DEFAULT_MAX_FRAME`, 16 MiB) less 1 MiB for the envelope (tag,
# ids, field names, a path, stderr's share of an exec result). Larger data is streamed.
MAX_DATA = 15 << 20

# ---------------------------------------------------------------------------- patterns

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,127}$"
ABS_PATH_PATTERN = r"^/[^\x00]*$"
ABS_PATH_OR_EMPTY_PATTERN = r"^(/[^\x00]*)?$"
TEXT_PATTERN = r"^[^\x00]*$"
ENV_NAME_PATTERN = r"^[^=\x00]+$"
IMAGE_PATTERN = r"^[^\x00\s]{1,512}$"
SIZE_PATTERN = r"^(\d+(\.\d+)?[kKmMgGtT]?[bB]?)?$"
LABEL_KEY_PATTERN = r"^[^\x00=]{1,128}$"

# What each pattern means, for error messages.
_MEANINGS = {
    ID_PATTERN: "1 to 100 letters, digits, '-', '_' or '.', starting with a letter or digit",
    NAME_PATTERN: "1 to 128 letters, digits or '_.:@+-', starting with a letter or digit",
    ABS_PATH_PATTERN: "an absolute path (starting with '/') with no NUL byte",
    ABS_PATH_OR_EMPTY_PATTERN: "empty or an absolute path (starting with '/') with no NUL byte",
    TEXT_PATTERN: "text with no NUL byte",
    ENV_NAME_PATTERN: "a non-empty name with no '=' and no NUL byte",
    IMAGE_PATTERN: "an image reference (1 to 512 characters, no spaces, no NUL byte)",
    SIZE_PATTERN: "empty or a size such as '10G' or '512m'",
    LABEL_KEY_PATTERN: "1 to 128 characters with no '=' or NUL byte",
}

# ---------------------------------------------------------------------------- types

SandboxId = Annotated[str, msgspec.Meta(pattern=ID_PATTERN)]
SessionName = Annotated[str, msgspec.Meta(pattern=NAME_PATTERN)]
AbsPath = Annotated[str, msgspec.Meta(pattern=ABS_PATH_PATTERN, max_length=4096)]
AbsPathOrEmpty = Annotated[str, msgspec.Meta(pattern=ABS_PATH_OR_EMPTY_PATTERN, max_length=4096)]
Text = Annotated[str, msgspec.Meta(pattern=TEXT_PATTERN)]
ShortText = Annotated[str, msgspec.Meta(pattern=TEXT_PATTERN, max_length=256)]
EnvName = Annotated[str, msgspec.Meta(pattern=ENV_NAME_PATTERN, max_length=4096)]
EnvValue = Annotated[str, msgspec.Meta(pattern=TEXT_PATTERN, max_length=1 << 20)]
Env = Annotated[dict[EnvName, EnvValue], msgspec.Meta(max_length=4096)]
LabelKey = Annotated[str, msgspec.Meta(pattern=LABEL_KEY_PATTERN)]
LabelValue = Annotated[str, msgspec.Meta(pattern=TEXT_PATTERN, max_length=4096)]
Labels = Annotated[dict[LabelKey, LabelValue], msgspec.Meta(max_length=256)]
Image = Annotated[str, msgspec.Meta(pattern=IMAGE_PATTERN)]
DiskSize = Annotated[str, msgspec.Meta(pattern=SIZE_PATTERN, max_length=32)]
Owner = Annotated[str, msgspec.Meta(pattern=TEXT_PATTERN, min_length=1, max_length=256)]

Seconds = Annotated[float, msgspec.Meta(gt=0, le=MAX_SECONDS)]
"""A positive, finite time limit."""
SecondsOrInf = Annotated[float, msgspec.Meta(gt=0)]
"""A positive time limit where infinity means "no limit" (`SetTimeouts`)."""
GraceSeconds = Annotated[float, msgspec.Meta(ge=0, le=3600)]
LeaseSeconds = Annotated[float, msgspec.Meta(ge=0, le=7 * 86400)]
Cpus = Annotated[float, msgspec.Meta(ge=0.01, le=4096)]
Memory = Annotated[int, msgspec.Meta(ge=6 << 20, le=MAX_BYTES)]
Pids = Annotated[int, msgspec.Meta(ge=1, le=1 << 22)]
Bytes = Annotated[int, msgspec.Meta(ge=0, le=MAX_BYTES)]
OutputLimit = Annotated[int, msgspec.Meta(ge=0, le=1 << 30)]  # streamed; else MAX_DATA
Data = Annotated[bytes, msgspec.Meta(max_length=MAX_DATA)]
FileMode = Annotated[int, msgspec.Meta(ge=0, le=0o7777)]
Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
RequestId = Annotated[int, msgspec.Meta(ge=1, le=(1 << 63) - 1)]
Credit = Annotated[int, msgspec.Meta(ge=1, le=1024)]
Percent = Annotated[float, msgspec.Meta(ge=0, le=100)]
Argv = Annotated[list[Text], msgspec.Meta(min_length=1, max_length=65536)]
Patterns = Annotated[
    list[Annotated[str, msgspec.Meta(max_length=4096)]], msgspec.Meta(min_length=1, max_length=64)
]
PullPolicy = Literal["missing", "never", "always"]
ExpirePolicy = Literal["stop", "delete"]

# ---------------------------------------------------------------------------- errors

_PATTERN = re.compile(r"matching regex '(.*)'$")
_KEY_AT = re.compile(r"^`key` in `\$\.?(.*)`$")
_AT = re.compile(r"^`\$\.?(.*)`$")


def explain(exc: msgspec.ValidationError, value: object = None) -> str:
    """A validation failure in words: the field (and its value, when `value` holds it), and
    what a valid value looks like."""
    problem, _, at = str(exc).partition(" - at ")
    key = _KEY_AT.match(at)
    where = f"{key.group(1)} (a key)" if key else (m.group(1) if (m := _AT.match(at)) else at)
    pattern = _PATTERN.search(problem)
    if pattern is not None:
        # msgspec shows the pattern with its backslashes doubled.
        meaning = _MEANINGS.get(pattern.group(1).replace("\\\\", "\\"))
        if meaning is not None:
            problem = f"must be {meaning}"
    shown = _field(value, where) if value is not None and where and not key else _MISSING
    if shown is not _MISSING:
        text = repr(shown)
        where = f"{where} {text if len(text) <= 80 else text[:77] + '...'}"
    return f"{where}: {problem}" if where else problem  # a whole-message rule names its fields


_MISSING = object()


def _field(value: object, path: str) -> object:
    """The value at a dotted path of plain attribute and key names, or `_MISSING`."""
    for name in path.split("."):
        if not name.isidentifier():
            return _MISSING
        if isinstance(value, dict):
            value = value.get(name, _MISSING)
        else:
            value = getattr(value, name, _MISSING)
        if value is _MISSING:
            return _MISSING
    return value


def bad_request(exc: Exception, what: str, value: object = None) -> BadRequest:
    """The `BadRequest` for a value of `what` that failed validation or could not be encoded.

    `value`, when given, is the value checked: the message then shows the offending field's
    value where it can.
    """
    if isinstance(exc, msgspec.ValidationError):
        return BadRequest(f"invalid {what}: {explain(exc, value)}")
    if isinstance(exc, UnicodeError):
        return BadRequest(f"invalid {what}: text must be valid Unicode (UTF-8): {exc}")
    return BadRequest(f"invalid {what}: {exc}")


_encoder = msgspec.msgpack.Encoder()
S = TypeVar("S", bound=msgspec.Struct)


def validate(value: object, kind: type[S], what: str = "") -> S:
    """`value` (a struct, or builtins) as a `kind` whose every constraint holds, or `BadRequest`.

    Checked exactly as a peer decodes it: encoded, then decoded as `kind`. Constructing a
    struct checks nothing, so values built in Python go through here before they are trusted.
    """
    try:
        return msgspec.msgpack.decode(_encoder.encode(value), type=kind)
    except (msgspec.ValidationError, msgspec.EncodeError, TypeError, UnicodeError) as exc:
        raise bad_request(exc, what or kind.__name__, value) from exc


__all__ = [
    "MAX_DATA",
    "MAX_SECONDS",
    "bad_request",
    "explain",
    "validate",
]
