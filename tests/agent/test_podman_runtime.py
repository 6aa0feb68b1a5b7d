"""The runtime conformance suite on rootless Podman, run as an ordinary user (not in the docker
group), as a site without Docker runs the agent; and how the agent picks its runtime.

Run as root (CI), each check runs in a process of the Podman user, `PODMAN_USER`, made with
the test images in its store by `scripts/extras/podman.sh`, against a Podman service of that
user started here. Run as an ordinary user, as that user. A host without Podman skips them
(fails them under ROCK_REQUIRE_EXTRAS=1, as `.ci/run` sets), naming the script.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rock_agent._podman import PodmanHost, config_changes, docker_event, padded_stamps, short_tag
from rock_agent._podman_service import answers
from rock_agent._runtime_choice import pick_runtime
from rock_agent.testing import CHECKS
from rock_core import BadRequest

from ..conftest import SH_IMAGE

REPO = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).with_name("podman_checks.py")
PODMAN_USER = os.environ.get("ROCK_PODMAN_USER", "rock-podman")
SETUP = "run `bash scripts/extras/podman.sh` as root first"
HANG = 600  # seconds: only a hang reaches it; no timing assertion


def _podman_user() -> pwd.struct_passwd:
    """The user the checks run as, or a skip (a failure under ROCK_REQUIRE_EXTRAS=1)."""
    name = PODMAN_USER if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    reason = ""
    if shutil.which("podman") is None:
        reason = f"podman is not installed: {SETUP}"
    else:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            reason = f"there is no user {name}: {SETUP}"
    if os.environ.get("ROCK_REQUIRE_EXTRAS") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


class PodmanUser:
    """Runs commands as the Podman user, with a Python that has this checkout's package."""

    def __init__(self, user: pwd.struct_passwd, python: str, socket: Path) -> None:
        self.user = user
        self.python = python
        self.socket = socket  # where its Podman service listens

    def command(self, argv: list[str]) -> list[str]:
        env = [
            f"HOME={self.user.pw_dir}",
            f"USER={self.user.pw_name}",
            "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            f"PYTHONPATH={REPO / 'src'}",
        ]
        if os.geteuid() != 0:
            return ["env", *env, *argv]
        user = self.user.pw_name
        become = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups"]
        return [*become, "env", "-i", *env, *argv]

    def run_checks(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [self.python, str(RUNNER), *args]
        return subprocess.run(
            self.command(argv),
            capture_output=True,
            text=True,
            timeout=HANG,
            cwd=self.user.pw_dir,
        )


@pytest.fixture(scope="module")
def podman() -> Iterator[PodmanUser]:
    """The Podman user, a Podman service of its own answering for the module."""
    user = _podman_user()
    python = sys.executable
    if os.geteuid() == 0:
        # Root's Python may live where the user cannot enter: the non-root agent's environment.
        setup = subprocess.run(
            ["bash", str(REPO / "scripts" / "nonroot-agent-env.sh")],
            capture_output=True,
            text=True,
        )
        if setup.returncode != 0:
            pytest.fail(f"cannot make a Python for {user.pw_name}: {setup.stderr[-2000:]}")
        python = setup.stdout.split()[-1]
    # A service of this test session's own, on a socket of its own: test processes running
    # at once (xdist) never stop one another's.
    folder = Path(tempfile.mkdtemp(prefix="rock-podman-service-"))
    if os.geteuid() == 0:
        shutil.chown(folder, user.pw_name, user.pw_name)
    podman_user = PodmanUser(user, python, folder / "podman.sock")
    argv = ["podman", "system", "service", "--time=0", f"unix://{podman_user.socket}"]
    service = subprocess.Popen(
        podman_user.command(argv), stdout=subprocess.DEVNULL, cwd=user.pw_dir
    )
    try:
        deadline = time.monotonic() + 60
        while not answers(podman_user.socket):
            if service.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the Podman service of {user.pw_name} did not start")
            time.sleep(0.1)
        yield podman_user
    finally:
        service.terminate()
        service.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CHECKS))
def test_podman_runtime(name: str, podman: PodmanUser) -> None:
    done = podman.run_checks(f"unix://{podman.socket}", SH_IMAGE, name)
    lines = done.stdout.strip().splitlines()
    if lines and lines[-1].startswith(f"SKIP {name}: "):
        pytest.skip(lines[-1].removeprefix(f"SKIP {name}: "))
    assert done.returncode == 0 and lines == [f"PASS {name}"], done.stdout + done.stderr[-4000:]


@pytest.mark.slow
def test_the_agent_starts_the_podman_service_it_needs(podman: PodmanUser) -> None:
    # A socket where nothing answers: the runtime starts Podman's service there, and stops it.
    folder = Path(tempfile.mkdtemp(prefix="rock-podman-"))
    try:
        if os.geteuid() == 0:
            shutil.chown(folder, podman.user.pw_name, podman.user.pw_name)
        socket = folder / "podman.sock"
        done = podman.run_checks(
            f"unix://{socket}", SH_IMAGE, "create_is_idempotent", "--own-service"
        )
        assert done.stdout.strip() == "PASS create_is_idempotent", done.stdout + done.stderr
        assert not answers(socket), "the service the agent started outlived it"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------------------- plain functions


def test_auto_picks_docker_then_podman_by_what_it_finds() -> None:
    env = {"XDG_RUNTIME_DIR": "/run/user/1000"}
    podman_url = "unix:///run/user/1000/podman/podman.sock"

    def pick(
        flag: str,
        url: str | None = None,
        *,
        present: frozenset[str] = frozenset(),
        podman: bool = False,
    ) -> tuple[str, str]:
        return pick_runtime(
            flag, url, env, euid=1000, exists=present.__contains__, installed=lambda _: podman
        )

    assert pick("auto", present={"/var/run/docker.sock"}) == (
        "docker",
        "unix:///var/run/docker.sock",
    )
    assert pick("auto", present={"/run/user/1000/podman/podman.sock"}) == ("podman", podman_url)
    assert pick("auto", podman=True) == ("podman", podman_url)  # the agent starts the service
    assert pick("auto") == ("docker", "unix:///var/run/docker.sock")  # reported as absent
    assert pick("auto", "unix:///srv/podman.sock") == ("podman", "unix:///srv/podman.sock")
    assert pick("auto", "tcp://10.0.0.1:2375") == ("docker", "tcp://10.0.0.1:2375")
    assert pick("podman", present={"/var/run/docker.sock"}) == ("podman", podman_url)
    assert pick("docker", podman=True) == ("docker", "unix:///var/run/docker.sock")
    assert pick_runtime("podman", None, {}, euid=0) == ("podman", "unix:///run/podman/podman.sock")
    with pytest.raises(BadRequest, match="--runtime is one of docker, podman, auto, got 'lxc'"):
        pick("lxc")


def test_rock_agent_refuses_an_unknown_runtime() -> None:
    env = {**os.environ, "ROCK_AGENT_RUNTIME": "lxc", "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run(
        [sys.executable, "-m", "rock_agent", "serve", "--stdio"],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--runtime is one of docker, podman, auto" in done.stderr


def test_podman_events_read_as_docker_events() -> None:
    def event(action: str, code: str) -> dict[str, object]:
        attributes = {"containerExitCode": code, "rock.sandbox": "s1", "rock.owner": "o"}
        return {"status": action, "Action": action, "id": "c1", "Actor": {"Attributes": attributes}}

    died = docker_event(event("die", "137"))
    assert died["Actor"] == {
        "Attributes": {**event("die", "137")["Actor"]["Attributes"], "exitCode": "137"}
    }  # type: ignore[index]
    started = docker_event(event("start", "0"))
    assert "exitCode" not in started["Actor"]["Attributes"]  # type: ignore[index]
    removed = docker_event(event("remove", "0"))
    assert (removed["Action"], removed["status"]) == ("destroy", "destroy")


def test_a_commits_config_is_said_as_dockerfile_changes() -> None:
    config = {
        "Labels": {"rock.owner": "", "team": "rl x"},
        "Entrypoint": [],
        "Cmd": ["python3"],
        "Env": ["PATH=/usr/bin:/bin", "EMPTY="],
        "WorkingDir": "",
        "User": "",
    }
    assert config_changes(config) == [
        'LABEL "rock.owner"=""',
        'LABEL "team"="rl x"',
        "ENTRYPOINT []",
        'CMD ["python3"]',
        'ENV PATH="/usr/bin:/bin"',
        'ENV EMPTY=""',
        "WORKDIR /",
    ]
    assert config_changes({**config, "User": "1000"})[-1] == "USER 1000"


def test_podman_names_and_stamps_read_as_dockers() -> None:
    assert short_tag("localhost/rock-test/busybox:latest") == "rock-test/busybox:latest"
    assert short_tag("docker.io/library/python:3.11") == "python:3.11"
    assert short_tag("docker.io/rock-test/committed:t1") == "rock-test/committed:t1"
    assert short_tag("quay.io/podman/hello:latest") == "quay.io/podman/hello:latest"
    stamped = b"2026-01-02T03:04:05Z one\n2026-01-02T03:04:06.5Z two\n"
    assert padded_stamps(stamped) == (
        b"2026-01-02T03:04:05.000000000Z one\n2026-01-02T03:04:06.5Z two\n"
    )


def test_what_a_podman_host_allows() -> None:
    def host(rootless: bool, version: str, controllers: list[str]) -> PodmanHost:
        info = {
            "host": {
                "security": {"rootless": rootless},
                "cgroupVersion": version,
                "cgroupControllers": controllers,
            }
        }
        return PodmanHost.from_info(info)

    v1 = host(True, "v1", [])
    assert v1.pause_problem() is not None and "cgroups are v1" in v1.pause_problem()  # type: ignore[operator]
    assert v1.limit_problem() == "rootless Podman on cgroup v1 ignores cpu and memory limits"
    delegated = host(True, "v2", ["cpu", "memory", "pids"])
    assert (delegated.pause_problem(), delegated.limit_problem()) == (None, None)
    partial = host(True, "v2", ["pids"])
    assert partial.limit_problem() == (
        "the cpu and memory cgroup controller is not delegated to this user: "
        "Podman ignores that limit"
    )
    assert host(False, "v1", ["cpu", "memory"]).pause_problem() is None  # root Podman
