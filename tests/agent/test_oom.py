"""The OOM-kill counters of cgroup v1 and v2, read as the kernel writes them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from rock_agent import _oom

from ..conftest import SH_IMAGE


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


def test_a_counter_stays_open_and_is_read_afresh_each_time(tmp_path: Path) -> None:
    counter = tmp_path / "counter"
    counter.write_text("oom_kill 2\n")
    assert _oom.count(counter) == 2
    fd = _oom._open[counter]
    counter.write_text("oom_kill 5\n")  # the kernel changes it in place
    assert _oom.count(counter) == 5
    assert _oom._open[counter] == fd  # read again through the same descriptor
    os.close(fd)  # a descriptor that fails (ENODEV once the cgroup is gone) is opened again
    assert _oom.count(counter) == 5
    _oom._close(counter)


def test_at_most_keep_open_counters_stay_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_oom, "KEEP_OPEN", 2)
    counters = [tmp_path / f"c{n}" for n in range(3)]
    for n, counter in enumerate(counters):
        counter.write_text(f"oom_kill {n}\n")
        assert _oom.count(counter) == n
    assert list(_oom._open) == counters[1:]  # the least recently read was closed
    assert _oom.count(counters[0]) == 0
    assert list(_oom._open) == [counters[2], counters[0]]
    for counter in counters:
        _oom._close(counter)


def test_a_restarted_containers_counter_is_read_from_its_new_cgroup(docker_engine: None) -> None:
    name = f"rock-oom-{os.getpid()}"
    run = ["docker", "run", "-d", "--name", name, "--memory", "64m", SH_IMAGE, "sleep", "600"]
    subprocess.run(run, check=True, capture_output=True)
    try:
        pid = int(_docker_pid(name))
        counter = _oom.counter_file(pid)
        if counter is None:
            pytest.skip("no memory cgroup counter readable here")
        assert _oom.count(counter) == 0
        stale = os.fstat(_oom._open[counter]).st_ino
        subprocess.run(["docker", "restart", "-t", "0", name], check=True, capture_output=True)
        assert _oom.counter_file(int(_docker_pid(name))) == counter  # the same path, anew
        assert _oom.count(counter) == 0
        # The stale descriptor (ENODEV) was replaced by one of the new cgroup's file.
        assert os.fstat(_oom._open[counter]).st_ino != stale
        _oom._close(counter)
    finally:
        subprocess.run(["docker", "rm", "-f", name], check=False, capture_output=True)


def _docker_pid(name: str) -> str:
    done = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Pid}}", name],
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()
