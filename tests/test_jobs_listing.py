"""The job listing script (`rock_sdk._jobs._LIST`) run by this host's sh on folders made by
hand: a job caught between its folder and its launch record is left out, not a crash."""

from __future__ import annotations

import subprocess
from pathlib import Path

from rock_sdk._jobs import _LIST, _parse


def listing(root: Path) -> bytes:
    done = subprocess.run(
        ["sh", "-c", _LIST, "rock-jobs", str(root), ""], capture_output=True, check=True
    )
    return done.stdout


def test_a_job_whose_launch_record_is_still_empty_is_not_listed_yet(tmp_path: Path) -> None:
    for name, cpid in (("ready", "4242"), ("starting", "")):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "cmd").write_text("sleep 1")
        (folder / "started").write_text("1.5")
        (folder / "limit").write_text("100")
        (folder / "pid").write_text("1")
        (folder / "cpid").write_text(cpid)  # `echo $$ > cpid` opened, not yet written
    jobs = _parse(listing(tmp_path), "sb-1")
    assert [(j.job_id, j.pid, j.command) for j in jobs] == [("ready", 4242, "sleep 1")]
