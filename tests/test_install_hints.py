"""Every install command the kit shows works: rock-kit is not on a package index, so it is
installed from a clone or a wheel built from one (README, "Install"), extras included."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BY_NAME = re.compile(r"""pip install -?-?\w*\s*['"]?rock-kit\b""")


def test_no_page_or_message_says_pip_install_rock_kit() -> None:
    places = [ROOT / "README.md", *ROOT.glob("docs/*.md")]
    for folder in ("src", "tests", "examples", "bench", "scripts"):
        places += [p for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".sh", ".md")]
    found = [
        f"{place.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 1}"
        for place in places
        if place != Path(__file__).resolve()
        for text in [place.read_text(errors="replace")]
        for m in BY_NAME.finditer(text)
    ]
    assert found == []
