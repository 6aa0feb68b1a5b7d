"""The `rock` CLI reaches clusters: the config file, ``--hosts`` and ``$ROCK_HOSTS``, a HOST on
every row, ids by prefix across hosts, a host that is down named but not in the way.

The cluster is two network-namespace hosts (real sshd and agents each, one Docker engine; see
tests/cluster/_netns.py) whose sandboxes another program holds. Config errors and precedence
need no engine: they are seen in which agent socket the command fails to reach.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from rock_sdk import ConfigError, load_config

from ..cluster._netns import NetnsCluster, open_netns_hosts
from ..conftest import SH_IMAGE
from .test_cli import cli

FAILED = 125

# Holds sandboxes on the configured cluster until its stdin closes: prints "ID HOST" each.
HOLDER = """
import sys, anyio
from rock_sdk import load_config

async def main(path, count):
    config = load_config(path)
    async with config.open_cluster() as cluster:
        for _ in range(count):
            sb = await cluster.create_sandbox(config.sandbox_config(memory="64m"))
            print(sb.sandbox_id, (await sb.status()).host, flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read)

anyio.run(main, sys.argv[1], int(sys.argv[2]))
"""


@pytest.fixture(autouse=True)
def no_hosts_from_outside(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hosts each test means: none from the environment running the tests."""
    monkeypatch.delenv("ROCK_HOSTS", raising=False)
    monkeypatch.delenv("ROCK_CONFIG", raising=False)


def lines(data: bytes) -> list[str]:
    return data.decode().splitlines()


def write_config(path: Path, hosts: list[str], netns: NetnsCluster, extra: str = "") -> Path:
    quoted = ", ".join(f'"{h}"' for h in hosts)
    path.write_text(
        f"hosts = [{quoted}]\n{extra}\n"
        "[ssh]\n"
        f'known_hosts = "{netns.known_hosts}"\n'
        f'client_keys = ["{netns.client_key}"]\n'
        "connect_timeout = 5\n"
        "[defaults]\n"
        f'image = "{SH_IMAGE}"\n'
        "[pools.warm]\n"
        "size = 2\n"
    )
    return path


@pytest.fixture(scope="module")
def netns(docker_engine: None) -> Iterator[NetnsCluster]:
    with open_netns_hosts(2) as hosts:
        yield hosts


@pytest.fixture(scope="module")
def config(netns: NetnsCluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("config") / "config.toml"
    return write_config(path, [h.url for h in netns], netns)


@pytest.fixture(scope="module")
def held(config: Path) -> Iterator[dict[str, str]]:
    """Three sandboxes spread over the two hosts, held by another program: id -> host id."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(config), "3"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdin is not None and holder.stdout is not None
    try:
        found = dict(holder.stdout.readline().split() for _ in range(3))
        assert len(found) == 3, "the holder could not start its sandboxes"
        yield found
    finally:
        holder.stdin.close()
        holder.wait(timeout=120)


# ---------------------------------------------------------------------------- listings


@pytest.mark.docker
@pytest.mark.slow
def test_ps_shows_every_hosts_sandboxes_with_their_host(
    config: Path, held: dict[str, str], netns: NetnsCluster
) -> None:
    assert sorted(set(held.values())) == sorted(h.host_id for h in netns), "spread over both"
    code, out, err = cli("--config", str(config), "ps")
    table = lines(out)
    assert (code, err) == (0, b"")
    assert table[0].split() == ["SANDBOX", "IMAGE", "STATE", "AGE", "OWNER", "HOST"]
    rows = {row.split()[0]: row.split() for row in table[1:]}
    assert {sid: rows[sid][5] for sid in held} == held
    code, out, _ = cli("--config", str(config), "ps", "--json")
    found = {row["sandbox_id"]: row for row in map(json.loads, lines(out))}
    assert code == 0 and {sid: found[sid]["host"] for sid in held} == held
    assert all(found[sid]["image"] == SH_IMAGE for sid in held)


@pytest.mark.docker
@pytest.mark.slow
def test_status_and_exec_by_prefix_reach_the_sandboxs_host(
    config: Path, held: dict[str, str]
) -> None:
    for sandbox_id, host in held.items():
        prefix = sandbox_id[:8]
        if sum(s.startswith(prefix) for s in held) > 1:
            continue
        code, out, _ = cli("--config", str(config), "status", "--json", prefix)
        report = json.loads(out)
        assert (code, report["sandbox_id"], report["host"]) == (0, sandbox_id, host)
        code, out, err = cli("--config", str(config), "exec", prefix, "--", "echo hi; exit 3")
        assert (code, out, err) == (3, b"hi\n", b"")


@pytest.mark.docker
@pytest.mark.slow
def test_stop_and_restart_by_prefix_on_the_second_host(
    config: Path, held: dict[str, str], netns: NetnsCluster
) -> None:
    sandbox_id = next(s for s, host in held.items() if host == netns[1].host_id)
    at = ("--config", str(config))
    assert cli(*at, "stop", "--timeout", "1", sandbox_id[:11]) == (
        0,
        f"{sandbox_id}\n".encode(),
        b"",
    )
    code, out, _ = cli(*at, "status", "--json", sandbox_id)
    assert (code, json.loads(out)["state"]) == (0, "exited")
    assert cli(*at, "restart", sandbox_id[:11]) == (0, f"{sandbox_id}\n".encode(), b"")
    code, out, _ = cli(*at, "status", "--json", sandbox_id)
    assert (code, json.loads(out)["state"], json.loads(out)["host"]) == (
        0,
        "running",
        netns[1].host_id,
    )


@pytest.mark.docker
@pytest.mark.slow
def test_images_on_each_host_by_host_id(config: Path, netns: NetnsCluster) -> None:
    # Listing and warming ask each engine for its disk use; the namespace hosts share one
    # engine, which refuses two of those at once: so here they go one host at a time.
    for host in netns:
        at = ("--config", str(config), "images")
        code, out, _ = cli(*at, "ls", "--json", "--host", host.host_id)
        rows = list(map(json.loads, lines(out)))
        assert code == 0 and {row["host"] for row in rows} == {host.host_id}
        assert any(SH_IMAGE in row["tags"] for row in rows)
        code, out, err = cli(*at, "warm", SH_IMAGE, "--host", host.host_id)
        assert (code, err) == (0, b"")
        (line,) = lines(out)
        assert line.startswith(f"{host.host_id}: {SH_IMAGE} ready (")
    code, out, err = cli("--config", str(config), "images", "ls", "--host", "nope")
    assert (code, out) == (FAILED, b"")
    assert err.decode().startswith("rock images ls: no host 'nope' in this cluster (hosts: ")


@pytest.mark.docker
@pytest.mark.slow
def test_pool_ls_shows_the_configured_pools(config: Path) -> None:
    code, out, _ = cli("--config", str(config), "pool", "ls")
    table = [row.split() for row in lines(out)]
    assert code == 0 and table[0] == [
        "POOL", "SANDBOX", "IMAGE", "STATE", "AGE", "OWNER", "HOST", "SIZE"
    ]  # fmt: skip
    assert ["warm", "-", "-", "-", "-", "-", "-", "2"] in table[1:]
    code, out, _ = cli("--config", str(config), "pool", "ls", "--json", "warm")
    assert (code, list(map(json.loads, lines(out)))) == (
        0,
        [{"pool": "warm", "size": 2, "member": None}],
    )


@pytest.mark.docker
@pytest.mark.slow
def test_a_host_that_is_down_is_named_and_the_others_listed(
    config: Path, held: dict[str, str], netns: NetnsCluster, tmp_path: Path
) -> None:
    down = f"ssh://root@{netns[1].address}:2?socket=/nowhere.sock"  # nothing listens on port 2
    hosts = [h.url for h in netns] + [down]
    with_down = write_config(tmp_path / "config.toml", hosts, netns)
    code, out, err = cli("--config", str(with_down), "ps", "-q")
    assert code == 0 and set(held) <= set(lines(out))
    (said,) = lines(err)
    assert said.startswith(f"rock ps: host {down} is not reachable, left out: ")
    code, out, err = cli("--config", str(with_down), "status", "sb-000000000000")
    assert (code, out) == (FAILED, b"")
    assert lines(err)[-1] == "rock status: no sandbox 'sb-000000000000' on any host"


@pytest.mark.docker
@pytest.mark.slow
def test_rm_by_prefix_removes_on_its_host(config: Path, held: dict[str, str]) -> None:
    last = list(held)[-1]  # the last test of the module to use `held` removes one of its
    code, out, err = cli("--config", str(config), "rm", last[:10])
    assert (code, out, err) == (0, f"{last}\n".encode(), b"")
    assert last not in lines(cli("--config", str(config), "ps", "-q")[1])
    code, _, err = cli("--config", str(config), "rm", last)
    assert code == FAILED and err.decode().startswith(f"rock rm: no sandbox {last!r} on any host")


@pytest.mark.docker
@pytest.mark.slow
def test_run_is_placed_on_the_configured_cluster(config: Path) -> None:
    code, out, err = cli("--config", str(config), "run", "--no-stdin", SH_IMAGE, "--", "echo hi")
    assert (code, out, err) == (0, b"hi\n", b"")


# ---------------------------------------------------------------------------- precedence


def agent_missing(path: Path) -> str:
    return f"no agent listens on {path}"


def test_hosts_flag_beats_rock_hosts_beats_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sockets = {name: tmp_path / f"{name}.sock" for name in ("file", "env", "flag")}
    path = tmp_path / "config.toml"
    path.write_text(f'hosts = ["unix://{sockets["file"]}"]\n')
    code, _, err = cli("--config", str(path), "ps")
    assert code == FAILED and agent_missing(sockets["file"]) in err.decode()
    monkeypatch.setenv("ROCK_HOSTS", f"unix://{sockets['env']}")
    code, _, err = cli("--config", str(path), "ps")
    assert code == FAILED and agent_missing(sockets["env"]) in err.decode()
    code, _, err = cli("--config", str(path), "--hosts", f"unix://{sockets['flag']}", "ps")
    assert code == FAILED and agent_missing(sockets["flag"]) in err.decode()
    assert lines(err)[-1].startswith("rock ps: ")
    code, _, err = cli("--config", str(path), "run", SH_IMAGE, "--", "true")
    assert code == FAILED and agent_missing(sockets["env"]) in err.decode()


def test_rock_config_names_the_file_and_xdg_is_the_default_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert load_config().path is None, "no file at the default place: an empty config"
    (tmp_path / "rock").mkdir()
    (tmp_path / "rock" / "config.toml").write_text('hosts = ["local"]\n')
    assert load_config().hosts == ("local",)
    named = tmp_path / "other.toml"
    monkeypatch.setenv("ROCK_CONFIG", str(named))
    with pytest.raises(ConfigError, match=f"^config file {named} does not exist$"):
        load_config()
    code, out, err = cli("ps")
    assert (code, out, err) == (
        FAILED,
        b"",
        f"rock ps: config file {named} does not exist\n".encode(),
    )


# ---------------------------------------------------------------------------- config errors


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hosts = [", " is not valid TOML: Invalid value (at end of document)"),
        ("colour = 1", ": colour = 1: unknown key"),
        ('[ssh]\nport = 22', ": ssh.port = 22: unknown key"),
        ('hosts = "local"', ": hosts = 'local': expected `array`, got `str`"),
        ('hosts = ["local", 3]', ": hosts[1] = 3: expected `str`, got `int`"),
        ("[ssh]\nconnect_timeout = nan", ": ssh.connect_timeout = nan: expected `float` > 0.0"),
        (
            "[ssh]\nverify_host_key = 'no'",
            ": ssh.verify_host_key = 'no': expected `bool`, got `str`",
        ),
        ("[pools.small]\nsize = -1", ": pools.small.size = -1: expected `int` >= 0"),
        ("[pools.small]\ncolour = 'red'", ": pools.small.colour = 'red': unknown key"),
        (
            '[defaults]\nmemory = "lots"',
            ": [defaults] memory 'lots' is not a size such as '512m' or '1g'",
        ),
    ],
)  # fmt: skip
def test_a_bad_config_is_one_line_naming_file_key_and_value(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text + "\n")
    code, out, err = cli("--config", str(path), "ps")
    assert (code, out) == (FAILED, b"")
    assert err.decode() == f"rock ps: config file {path}{message}\n"


def test_a_program_reads_the_same_config(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        'hosts = ["ssh://gpu[01-02]"]\n[ssh]\nconnect_timeout = 3\nclient_keys = ["/k"]\n'
        '[defaults]\nimage = "python:3.11"\ncpus = 2\n'
        '[pools.small]\nimage = "alpine"\nsize = 4\nmemory = "256m"\n'
    )
    config = load_config(path)
    assert config.cluster_hosts() == ["ssh://gpu[01-02]"]
    assert config.cluster_hosts("local, ssh://b") == ["local", "ssh://b"]
    assert config.ssh is not None and config.ssh.connect_timeout == 3
    assert config.ssh.client_keys == ["/k"] and config.ssh.keepalive_interval == 15.0
    made = config.sandbox_config(memory="2g")
    assert (made.image, made.cpus, made.memory) == ("python:3.11", 2.0, "2g")
    assert config.pools["small"].size == 4
    with pytest.raises(ConfigError, match=r"no pool 'big' \(configured pools: small\)$"):
        config.pool_config("big")


@pytest.mark.docker
@pytest.mark.slow
def test_a_program_opens_the_configured_pool(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f'hosts = ["local"]\n[pools.tiny]\nimage = "{SH_IMAGE}"\nsize = 1\n')
    config = load_config(path)

    async def main() -> None:
        async with config.open_cluster() as cluster, config.open_pool(cluster, "tiny") as pool:
            await pool.wait_ready()
            async with pool.sandbox() as sb:
                (member,) = await cluster.core.list_host_sandboxes(owner=cluster.owner)
                assert (member.sandbox_id, member.labels["rock.pool"]) == (sb.sandbox_id, "tiny")

    anyio.run(main)
