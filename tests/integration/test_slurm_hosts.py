"""`HostSource.from_slurm` through a fake `scontrol` first on PATH (a real child process).

The fake expands ``n[1-3]`` as Slurm would and fails on anything else with Slurm's message; the
hosts it names are fake agents reached through `host=`, so no SSH is needed.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from rock_core import BadRequest, HostSource, open_cluster
from rock_core._host_sets import HostItem
from rock_core.testing import FakeAgent, FakeAgentConnector

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def scontrol(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake `scontrol` first on PATH: it expands ``n[1-3]`` and fails on anything else."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "scontrol"
    script.write_text(
        "#!/bin/sh\n"
        '[ "$1 $2" = "show hostnames" ] || exit 2\n'
        'if [ "$3" = "n[1-3]" ]; then printf "n1\\nn2\\nn3\\n"; exit 0; fi\n'
        'echo "scontrol: error: Invalid node name specified" >&2; exit 1\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return script


async def test_slurm_nodes_come_from_scontrol(
    scontrol: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLURM_JOB_NODELIST", "n[1-3]")
    sets = HostSource.from_slurm(user="rl", port=22).snapshots()
    assert await anext(sets) == ["ssh://rl@n1:22", "ssh://rl@n2:22", "ssh://rl@n3:22"]
    with pytest.raises(StopAsyncIteration):  # a job's nodes do not change
        await anext(sets)

    agents = {name: FakeAgent(host_id=name) for name in ("n1", "n2", "n3")}

    def host(name: str) -> HostItem:
        return FakeAgentConnector(agents[name], name=name)

    async with open_cluster(HostSource.from_slurm(host=host), owner="me") as cluster:
        assert sorted(cluster.hosts) == ["n1", "n2", "n3"]


async def test_slurm_errors_say_what_is_missing(
    scontrol: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SLURM_JOB_NODELIST", raising=False)
    with pytest.raises(BadRequest, match=r"^not inside a Slurm job: \$SLURM_JOB_NODELIST is not"):
        await anext(HostSource.from_slurm().snapshots())
    with pytest.raises(
        BadRequest,
        match=r"^scontrol show hostnames 'x\[1' failed: scontrol: error: Invalid node name",
    ):
        await anext(HostSource.from_slurm(nodelist="x[1").snapshots())
    monkeypatch.setenv("PATH", str(scontrol.parent.parent))  # no scontrol there
    with pytest.raises(BadRequest, match=r"^cannot run scontrol to expand the Slurm node list"):
        async with open_cluster(HostSource.from_slurm(nodelist="n[1-3]"), owner="me"):
            pass
