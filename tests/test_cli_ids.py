"""Sandbox ids given to `rock` commands by unique prefix (`_cli_base._resolve`)."""

from __future__ import annotations

import pytest

from rock_core import BadRequest
from rock_sdk._cli_base import _resolve


def test_an_exact_id_wins_and_a_unique_prefix_resolves() -> None:
    assert _resolve(["abc", "abcd"], "abc") == "abc"
    assert _resolve(["abc123", "def456"], "de") == "def456"
    assert _resolve(["abc123"], "zz") == "zz"  # kept: the command's own lookup reports it


def test_an_ambiguous_prefix_names_the_ids() -> None:
    with pytest.raises(BadRequest, match="prefix 'ab' is ambiguous: it matches ab1, ab2"):
        _resolve(["ab2", "ab1"], "ab")


def test_an_empty_id_never_picks_a_sandbox() -> None:
    # Every id starts with "": `rock rm ""` must not remove the only sandbox there is.
    with pytest.raises(BadRequest, match="sandbox id is empty"):
        _resolve(["abc123"], "")
