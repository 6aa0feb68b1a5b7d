"""The OOM-kill counters of cgroup v1 and v2, read as the kernel writes them."""

from __future__ import annotations

from pathlib import Path

import pytest

from rock_agent import _oom


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", 3),  # v1 memory.oom_control
        ("low 0\nhigh 0\nmax 2\noom 1\noom_kill 7\noom_group_kill 0\n", 7),  # v2 memory.events
        ("oom_kill_disable 0\nunder_oom 0\n", None),  # an old kernel: no count
        ("oom_kill x\n", None),
    ],
)
def test_the_count_is_read_from_both_cgroup_versions(
    tmp_path: Path, text: str, expected: int | None
) -> None:
    counter = tmp_path / "counter"
    counter.write_text(text)
    assert _oom.count(counter) == expected


def test_no_counter_means_no_oom_is_ever_reported(tmp_path: Path) -> None:
    assert _oom.count(None) is None and _oom.count(tmp_path / "missing") is None
    assert not _oom.grew(None, 0) and not _oom.grew(tmp_path / "missing", None)
    counter = tmp_path / "counter"
    counter.write_text("oom_kill 2\n")
    assert _oom.grew(counter, 1) and not _oom.grew(counter, 2)
