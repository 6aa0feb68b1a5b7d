"""Reading the move: the content of the last complete \\boxed{...}."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rock_sdk.envs._boxed import last_boxed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\\boxed{up}", "up"),
        ("first \\boxed{up} then \\boxed{ down }", "down"),
        ("\\boxed {left}", "left"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
        ("\\boxed{up} and an unclosed \\boxed{dow", "up"),
        ("no box at all", None),
        ("\\boxed{unclosed", None),
        ("\\boxed{}", ""),
        ("boxed{up}", None),
    ],
)
def test_last_boxed(text: str, expected: str | None) -> None:
    assert last_boxed(text) == expected


@given(st.text(alphabet=st.characters(blacklist_characters="{}\\")), st.text())
def test_last_complete_box_wins_whatever_comes_before(content: str, before: str) -> None:
    assert last_boxed(f"{before}\\boxed{{{content}}} trailing words") == content.strip()
