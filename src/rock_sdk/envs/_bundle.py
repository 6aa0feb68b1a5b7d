"""The code a sandbox needs to run an environment, as one zip file for ``sys.path``.

Rules:
- The zip holds this package's modules and data (``rock_sdk/envs``), the module of the error
  classes games raise (as ``rock_core/_errors.py``) and stub ``__init__`` files for
  ``rock_core`` (which exports those classes, so ``from rock_core import BadRequest`` works
  there as here), ``rock_sdk`` and ``rock_sdk.envs``, importing nothing outside the standard
  library. Modules that need
  pip packages (the vector envs, the gymnasium catalog) are shipped but never imported there.
- An entry point outside this kit ships its whole top-level package (or its single module):
  the ``.py`` files and any data files below it, ``__pycache__`` left out. A class defined in
  ``__main__`` cannot be shipped: `BadRequest`.
- The bytes are deterministic (fixed timestamps, sorted names), so their hash names the file
  in the sandbox and envs sharing a sandbox share one copy.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import io
import sys
import zipfile
from pathlib import Path

from rock_core import BadRequest, NotFound, RockError

__all__ = ["Bundle", "bundle_for"]

_ENVS_DIR = Path(__file__).resolve().parent
_KIT = {"rock_sdk", "rock_core"}
_STUBS = {
    "rock_sdk/__init__.py": '"""rock_sdk inside a sandbox: only the environments."""\n',
    "rock_sdk/envs/__init__.py": (
        '"""rock_sdk.envs inside a sandbox: the standard-library part (see _bundle)."""\n\n'
        "from ._env import Env\nfrom ._game import TextGame\n\n"
        '__all__ = ["Env", "TextGame"]\n'
    ),
}
_EPOCH = (1980, 1, 1, 0, 0, 0)


class Bundle:
    """A zip of environment code: its bytes and the path it gets in a sandbox."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.digest = hashlib.sha256(data).hexdigest()[:16]
        #: Where the zip lives inside a sandbox (content-addressed).
        self.path = f"/tmp/rock-envs/{self.digest}.zip"


def _files_below(root: Path) -> list[Path]:
    return sorted(
        path
        for path in root.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    )


def _top_level_source(module: str) -> tuple[Path, str] | None:
    """(local path, name in the zip) of `module`'s top-level package or module; None if ours."""
    top = module.split(".", 1)[0]
    if top in _KIT or top in sys.stdlib_module_names:
        return None  # ours, or the standard library, which the sandbox's python3 has
    if top == "__main__":
        raise BadRequest(
            "an environment defined in the script being run (__main__) cannot be shipped to a "
            "sandbox; define it in a module and register 'module:Name'"
        )
    spec = importlib.util.find_spec(top)
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations))), top  # a package
    if spec is None or spec.origin is None:
        raise NotFound(f"cannot find module {top!r} to ship to the sandbox")
    origin = Path(spec.origin)
    return origin, origin.name


def _error_classes() -> dict[str, bytes]:
    """The module defining the error tree, and a ``rock_core`` package exporting its classes."""
    errors = sys.modules[RockError.__module__]
    names = sorted(
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, RockError) and not name.startswith("_")
    )
    stub = (
        '"""rock_core inside a sandbox: only the error classes."""\n\n'
        f"from ._errors import {', '.join(names)}\n\n__all__ = {names!r}\n"
    )
    return {
        "rock_core/__init__.py": stub.encode(),
        "rock_core/_errors.py": Path(errors.__file__ or "").read_bytes(),
    }


@functools.cache
def bundle_for(module: str = "rock_sdk.envs") -> Bundle:
    """The zip that lets a sandbox import `module` (this kit's envs plus its top package)."""
    entries: dict[str, bytes] = {name: text.encode() for name, text in _STUBS.items()}
    entries.update(_error_classes())
    for path in _files_below(_ENVS_DIR):
        name = "rock_sdk/envs/" + path.relative_to(_ENVS_DIR).as_posix()
        entries.setdefault(name, path.read_bytes())
    extra = _top_level_source(module)
    if extra is not None:
        local, name = extra
        if local.is_dir():
            for path in _files_below(local):
                entries[f"{name}/{path.relative_to(local).as_posix()}"] = path.read_bytes()
        else:
            entries[name] = local.read_bytes()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(entries):
            archive.writestr(zipfile.ZipInfo(name, _EPOCH), entries[name], zipfile.ZIP_DEFLATED)
    return Bundle(buffer.getvalue())
