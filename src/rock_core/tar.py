"""Tar streams built and read piece by piece, without I/O: the format the SDK and the agents
exchange for uploads and downloads of any size.

Rules:
- Building: one header function per member kind (`file_header`, `dir_header`,
  `symlink_header`, PAX format), then the content, then `padding`; `END` closes the stream.
  `single_file` is a whole one-file archive for small contents.
- Reading: `TarScanner.feed` follows a stream chunk by chunk and returns each `Member` whose
  header is complete, without keeping content; `kind` names a member's type flag. A stream it
  cannot read is a `rock_core.BadRequest`.
- Names are encoded as `ENCODING` (UTF-8, with surrogate escapes for names that are not).
"""

from ._tar import (
    BLOCK,
    ENCODING,
    END,
    Member,
    TarScanner,
    dir_header,
    file_header,
    kind,
    padding,
    single_file,
    symlink_header,
)

__all__ = [
    "BLOCK",
    "ENCODING",
    "END",
    "Member",
    "TarScanner",
    "dir_header",
    "file_header",
    "kind",
    "padding",
    "single_file",
    "symlink_header",
]
