"""The Harbor adapter, driven by the real, unmodified Harbor (harbor==0.26.0) against Docker.

Harbor needs Python >= 3.12, so it lives in its own venv (scripts/extras/harbor.sh) and these
tests (on the kit's Python) run it in subprocesses: Harbor's CLI and trial code with its oracle
agent and verifier, the example, the docs' snippet, and a driver calling the environment's
methods directly. The venv runs this checkout's code (PYTHONPATH). Without the venv the tests
skip, and fail under ROCK_REQUIRE_EXTRAS=1 (see conftest.py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from rock_sdk.integrations import _harbor_shell as shell

from ..conftest import PY_IMAGE, SH_IMAGE

ROOT = Path(__file__).resolve().parents[2]
TASK = Path(__file__).resolve().parent / "harbor_task"
VENV = Path("/opt/rock-extras/harbor")
IMPORT_PATH = "rock_sdk.integrations.harbor:RockEnvironment"


def harbor_python() -> Path:
    """The venv's python, or skip (fail under ROCK_REQUIRE_EXTRAS=1) naming the script."""
    python = VENV / "bin" / "python"
    if not python.exists():
        reason = f"{python} is missing: run scripts/extras/harbor.sh (harbor needs Python 3.12)"
        if os.environ.get("ROCK_REQUIRE_EXTRAS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return python


def run_harbor(*argv: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a program of the venv (`python` or `harbor`) with this checkout's code."""
    harbor_python()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    program, *rest = (str(part) for part in argv)
    done = subprocess.run(
        [str(VENV / "bin" / program), *rest],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, f"{argv} failed:\n{done.stdout}\n{done.stderr}"
    return done


def make_task(tmp_path: Path, name: str = "hello-task", **replace: str) -> Path:
    """A copy of the fixture task, with task.toml values replaced (``image=...``)."""
    task = tmp_path / name
    shutil.copytree(TASK, task)
    toml = task / "task.toml"
    text = toml.read_text()
    if "image" in replace:
        text = text.replace(f'"{PY_IMAGE}"', f'"{replace["image"]}"')
    toml.write_text(text)
    return task


def trial_result(trials: Path) -> dict[str, object]:
    """The result.json of the one trial under `trials`."""
    (result,) = trials.glob("*/result.json")
    loaded: dict[str, object] = json.loads(result.read_text())
    return loaded


@pytest.mark.docker
@pytest.mark.slow
def test_oracle_solves_the_task_through_harbors_cli(tmp_path: Path) -> None:
    task = make_task(tmp_path)
    trials = tmp_path / "trials"
    done = run_harbor(
        "harbor", "trials", "start", "-p", task, "-a", "oracle", "-e", IMPORT_PATH,
        "--trials-dir", trials, cwd=tmp_path,
    )  # fmt: skip
    assert "Rewards: {'reward': 1.0}" in done.stdout
    result = trial_result(trials)
    assert result["exception_info"] is None
    assert result["verifier_result"] == {"rewards": {"reward": 1.0}}
    # The oracle's log, written in the sandbox and downloaded by Harbor: the solution ran
    # in the task's workdir.
    (log,) = trials.glob("*/agent/oracle.txt")
    assert log.read_text() == "wrote 5050 in /app as root\n"


@pytest.mark.docker
@pytest.mark.slow
def test_failing_solution_gets_reward_0_through_the_example(tmp_path: Path) -> None:
    task = make_task(tmp_path)
    (task / "solution" / "solve.sh").write_text("#!/bin/bash\necho 42 > /app/answer.txt\n")
    done = run_harbor(
        "python", ROOT / "examples/integrations/harbor_trial.py", task, tmp_path / "trials",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.stdout.splitlines() == ['{"rewards": {"reward": 0.0}}']


@pytest.mark.docker
@pytest.mark.slow
def test_a_missing_image_is_a_clear_error(tmp_path: Path) -> None:
    task = make_task(tmp_path, image="rock-test/no-such-image:absent")
    trials = tmp_path / "trials"
    run_harbor(
        "harbor", "trials", "start", "-p", task, "-a", "oracle", "-e", IMPORT_PATH,
        "--environment-kwarg", "pull=never", "--trials-dir", trials, cwd=tmp_path,
    )  # fmt: skip
    error = trial_result(trials)["exception_info"]
    assert isinstance(error, dict)
    assert error["exception_type"] == "ImageNotFound"
    assert "rock-test/no-such-image:absent" in error["exception_message"]


def with_dockerfile(task: Path) -> Path:
    """Make `task` build its image: no docker_image, an environment/Dockerfile instead."""
    toml = task / "task.toml"
    toml.write_text(toml.read_text().replace(f'docker_image = "{PY_IMAGE}"\n', ""))
    (task / "environment").mkdir()
    (task / "environment" / "Dockerfile").write_text(
        f"FROM {PY_IMAGE}\nRUN echo built-by-the-kit > /opt/marker\nWORKDIR /app\n"
    )
    solve = task / "solution" / "solve.sh"
    solve.write_text(solve.read_text() + "cat /opt/marker\n")
    return task


@pytest.mark.docker
@pytest.mark.slow
def test_a_task_image_is_built_from_its_dockerfile(tmp_path: Path, built: list[str]) -> None:
    built.append("rock-harbor/hello-task")
    task = with_dockerfile(make_task(tmp_path))
    trials = tmp_path / "trials"
    done = run_harbor(
        "harbor", "trials", "start", "-p", task, "-a", "oracle", "-e", IMPORT_PATH,
        "--trials-dir", trials, cwd=tmp_path,
    )  # fmt: skip
    assert "Rewards: {'reward': 1.0}" in done.stdout
    (log,) = trials.glob("*/agent/oracle.txt")
    assert log.read_text() == "wrote 5050 in /app as root\nbuilt-by-the-kit\n"
    tag = subprocess.run(
        ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", "rock-harbor/hello-task"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert len(tag) == 1 and re.fullmatch(r"rock-harbor/hello-task:[0-9a-f]{12}", tag[0])


@pytest.mark.docker
@pytest.mark.slow
def test_a_dockerfile_that_does_not_build_is_a_build_failure(
    tmp_path: Path, built: list[str]
) -> None:
    built.append("rock-harbor/broken-task")  # its base layers only, if anything
    task = with_dockerfile(make_task(tmp_path, "broken-task"))
    (task / "environment" / "Dockerfile").write_text(
        f"FROM {PY_IMAGE}\nRUN echo failing-step && exit 7\n"
    )
    trials = tmp_path / "trials"
    run_harbor(
        "harbor", "trials", "start", "-p", task, "-a", "oracle", "-e", IMPORT_PATH,
        "--trials-dir", trials, cwd=tmp_path,
    )  # fmt: skip
    error = trial_result(trials)["exception_info"]
    assert isinstance(error, dict)
    assert error["exception_type"] == "SandboxBuildFailedError"
    message = error["exception_message"]
    assert re.search(r"Step 2/\d+ : RUN echo failing-step && exit 7 failed:", message)
    assert "returned a non-zero code: 7" in message


@pytest.fixture
def built() -> Iterator[list[str]]:
    """Image repositories a test builds; every tag of each is removed after it."""
    repositories: list[str] = []
    yield repositories
    for repository in repositories:
        tags = subprocess.run(
            ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", repository],
            capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
        if tags:
            subprocess.run(["docker", "rmi", "-f", *tags], capture_output=True, check=True)


ON_CLUSTER = """
import asyncio, sys
from pathlib import Path

from harbor.models.trial.config import AgentConfig, EnvironmentConfig, TaskConfig, TrialConfig
from harbor.trial.hooks import TrialEvent
from harbor.trial.trial import Trial
from rock_sdk import open_cluster
from rock_sdk.integrations.harbor import use_cluster


async def main():
    config = TrialConfig(
        task=TaskConfig(path=Path(sys.argv[1])),
        trials_dir=Path(sys.argv[2]),
        agent=AgentConfig(name="oracle"),
        environment=EnvironmentConfig(import_path="rock_sdk.integrations.harbor:RockEnvironment"),
    )
    async with open_cluster(["local"]) as cluster:
        seen = []

        async def count(event):
            seen.append(len(cluster.sandboxes()))

        with use_cluster(cluster):
            trial = await Trial.create(config)
            trial.add_hook(TrialEvent.AGENT_START, count)
            result = await trial.run()
        print(result.verifier_result.rewards, seen, len(cluster.sandboxes()))


asyncio.run(main())
"""


@pytest.mark.docker
@pytest.mark.slow
def test_use_cluster_places_and_builds_on_the_given_cluster(
    tmp_path: Path, built: list[str]
) -> None:
    built.append("rock-harbor/cluster-task")
    task = with_dockerfile(make_task(tmp_path, "cluster-task"))
    (tmp_path / "on_cluster.py").write_text(ON_CLUSTER)
    done = run_harbor("python", tmp_path / "on_cluster.py", task, tmp_path / "trials", cwd=tmp_path)
    # One sandbox on the cluster while the agent ran, none after the trial.
    assert done.stdout.splitlines()[-1] == "{'reward': 1.0} [1] 0"


@pytest.mark.slow
def test_bad_environment_kwargs_are_refused_by_harbor(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            str(harbor_python()), "-c",
            "from rock_sdk.integrations.harbor import RockEnvironment as E\n"
            "E.parse_options({'pull': 'sometimes'})",
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    assert "ValueError: Invalid kwargs for environment 'rock':" in done.stderr
    assert "pull: Input should be 'missing', 'never' or 'always'" in done.stderr


DRIVER = """
import asyncio, json, subprocess, sys
from pathlib import Path

from harbor.models.task.config import EnvironmentConfig, NetworkMode, NetworkPolicy
from harbor.models.trial.paths import TrialPaths
from rock_sdk.integrations.harbor import RockEnvironment

work = Path(sys.argv[1])
out = {}


def environment(mode=NetworkMode.NO_NETWORK, hosts=(), name="env", image=sys.argv[2], **more):
    return RockEnvironment(
        environment_dir=work / "environment",
        environment_name="driver",
        session_id=f"driver__{name}",
        trial_paths=TrialPaths(work / "trial"),
        task_env_config=EnvironmentConfig(docker_image=image, workdir="/app"),
        network_policy=NetworkPolicy(network_mode=mode, allowed_hosts=list(hosts)),
        **more,
    )


def containers(session):
    return subprocess.run(
        ["docker", "ps", "-a", "--filter", f"label=harbor.session={session}",
         "--format", "{{.State}}"],
        capture_output=True, text=True, check=True,
    ).stdout


async def error(call):
    try:
        await call
    except Exception as exc:
        return [type(exc).__name__, str(exc)]
    return None


async def main():
    env = environment()
    out["before_start"] = await error(env.exec("true"))
    out["capabilities"] = env.capabilities.model_dump()
    await env.start(force_build=False)
    try:
        ex = env.exec
        out["default_cwd"] = (await ex("pwd")).stdout
        out["cwd"] = (await ex("pwd", cwd="/tmp")).stdout
        out["env"] = (await ex('echo "$GREETING"', env={"GREETING": "hi 'there'"})).stdout
        r = await ex("echo out; echo err >&2; exit 3")
        out["streams"] = [r.stdout, r.stderr, r.return_code]
        out["bash"] = (await ex("echo $BASH_VERSION | cut -c1")).stdout
        out["user_name"] = (await ex("id -un", user="nobody")).stdout
        out["user_id"] = (await ex("id -u", user=1234)).stdout
        out["root"] = (await ex("id -un", user="root")).stdout
        await ex("cd / && export LEFT=1 && rm -rf /tmp/.rock-harbor*")
        out["isolated"] = (await ex('pwd; echo "${LEFT:-unset}"')).stdout
        out["timeout"] = await error(ex("sleep 30", timeout_sec=1))
        out["after_timeout"] = (await ex("echo alive")).stdout
        rs = await asyncio.gather(*(ex(f"sleep 1; echo {i}") for i in range(3)))
        out["concurrent"] = [r.stdout for r in rs]
        out["bad_env"] = await error(ex("true", env={"BAD-NAME": "x"}))
        out["interfaces"] = (await ex("ls /sys/class/net")).stdout

        local = work / "local"
        (local / "sub").mkdir(parents=True)
        (local / "a.txt").write_text("a")
        (local / "sub" / "b.txt").write_text("b")
        await env.upload_file(local / "a.txt", "/data/one/a.txt")
        await ex("mkdir -p /data/dir && echo old > /data/dir/old.txt")
        await env.upload_dir(local, "/data/dir")
        out["uploaded"] = (await ex("cd /data && find . -type f | sort")).stdout
        await env.download_file("/data/one/a.txt", work / "down" / "file.txt")
        out["downloaded_file"] = (work / "down" / "file.txt").read_text()
        target = work / "down" / "dir"
        target.mkdir()
        (target / "kept.txt").write_text("kept")
        (target / "a.txt").write_text("stale")
        await env.download_dir("/data/dir", target)
        out["downloaded_dir"] = sorted(
            str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()
        )
        out["overwritten"] = (target / "a.txt").read_text()
        out["missing_file"] = await error(env.download_file("/nope", work / "nope"))
    finally:
        await env.stop(delete=True)
    out["after_stop"] = await error(env.exec("true"))
    out["containers_after_stop"] = containers("driver__env")

    # A start that fails after the sandbox is made deletes it: here Harbor's folders
    # cannot be made (/proc takes no new folders).
    mount = {"type": "bind", "source": str(work), "target": "/proc/harbor-logs"}
    broken = environment(name="broken", auto_mounts=[mount])
    out["failed_start"] = await error(broken.start(force_build=False))
    out["containers_after_failed_start"] = containers("driver__broken")

    kept = environment(name="kept")
    await kept.start(force_build=False)
    await kept.exec("echo kept > /app/file")
    await kept.stop(delete=False)
    out["kept"] = containers("driver__kept")

    small = environment(name="busybox", image=sys.argv[3])
    await small.start(force_build=False)
    try:
        r = await small.exec('echo "$0 in $(pwd)"; echo oops >&2; exit 4', env={"A": "1"})
        out["busybox"] = [r.stdout, r.stderr, r.return_code]
    finally:
        await small.stop(delete=True)
    try:
        environment(NetworkMode.ALLOWLIST, ["example.com"])
    except ValueError as exc:
        out["allowlist"] = str(exc)


asyncio.run(main())
print(json.dumps(out))
"""


@pytest.mark.docker
@pytest.mark.slow
def test_the_environment_runs_harbors_calls_on_a_sandbox(tmp_path: Path) -> None:
    (tmp_path / "driver.py").write_text(DRIVER)
    done = run_harbor("python", tmp_path / "driver.py", tmp_path, PY_IMAGE, SH_IMAGE, cwd=tmp_path)
    out = json.loads(done.stdout.splitlines()[-1])
    assert out["before_start"] == [
        "RuntimeError",
        "environment driver__env is not running: call start() first",
    ]
    capabilities = out["capabilities"]
    assert capabilities["disable_internet"] is True
    assert [name for name, value in capabilities.items() if value] == ["disable_internet"]
    assert out["default_cwd"] == "/app\n"
    assert out["cwd"] == "/tmp\n"
    assert out["env"] == "hi 'there'\n"
    assert out["streams"] == ["out\n", "err\n", 3]
    assert out["bash"] == "5\n"
    assert out["user_name"] == "nobody\n"
    assert out["user_id"] == "1234\n"
    assert out["root"] == "root\n"
    assert out["isolated"] == "/app\nunset\n"
    assert out["timeout"] == ["RuntimeError", "Command timed out after 1 seconds"]
    assert out["after_timeout"] == "alive\n"
    assert out["concurrent"] == ["0\n", "1\n", "2\n"]
    assert out["bad_env"] == [
        "ValueError",
        "environment variable name 'BAD-NAME' cannot be exported by a shell",
    ]
    assert out["interfaces"] == "lo\n"  # network_mode no-network: the sandbox has no network
    assert out["uploaded"] == "./dir/a.txt\n./dir/old.txt\n./dir/sub/b.txt\n./one/a.txt\n"
    assert out["downloaded_file"] == "a"
    assert out["downloaded_dir"] == ["a.txt", "kept.txt", "old.txt", "sub/b.txt"]
    assert out["overwritten"] == "a"
    assert out["missing_file"][0] == "FileNotFound"
    assert out["missing_file"][1].startswith("/nope: no such file or folder in sandbox sb-")
    assert out["after_stop"] == [
        "RuntimeError",
        "environment driver__env is not running: call start() first",
    ]
    assert out["containers_after_stop"] == ""  # deleted
    assert out["failed_start"][0] == "RuntimeError"
    assert out["failed_start"][1].startswith("cannot make Harbor's folders in the sandbox: mkdir:")
    assert out["containers_after_failed_start"] == ""
    assert out["kept"] == "exited\n"  # stop(delete=False): stopped, files kept
    assert out["busybox"] == ["sh in /app\n", "oops\n", 4]  # no bash there: sh
    assert out["allowlist"].startswith(
        "network_mode='allowlist' is not supported by rock environment."
    )


@pytest.mark.docker
@pytest.mark.slow
def test_the_docs_snippet_runs_a_trial(tmp_path: Path) -> None:
    docs = (ROOT / "docs" / "integrations.md").read_text()
    section = docs.split("\n## Harbor\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert blocks, "the Harbor section has no python block"
    make_task(tmp_path, "hello-task")
    for number, block in enumerate(blocks):
        (tmp_path / f"snippet{number}.py").write_text(block)
        done = run_harbor("python", tmp_path / f"snippet{number}.py", cwd=tmp_path)
        assert "{'reward': 1.0}" in done.stdout


# The shell lines behind `exec`: plain functions, checked without Harbor or Docker.


@pytest.mark.parametrize(
    ("user", "prefix"),
    [
        (None, []),
        ("root", []),
        (0, []),
        ("nobody", ["runuser", "-u", "nobody", "--"]),
        (1234, ["setpriv", "--reuid=1234", "--regid=1234", "--clear-groups", "--"]),
    ],
)
def test_user_prefix(user: str | int | None, prefix: list[str]) -> None:
    assert shell.user_prefix(user, ("root", "0")) == prefix


def test_user_prefix_refuses_other_types() -> None:
    with pytest.raises(ValueError, match=r"^user must be a name or a numeric id, got True$"):
        shell.user_prefix(True, ("root", "0"))


def test_exec_line_quotes_everything() -> None:
    line = shell.exec_line(
        "echo $X; exit 3",
        shell="bash",
        stderr_file=shell.stderr_path("s 1"),
        cwd="/my dir",
        env={"X": "a'b"},
        user=["runuser", "-u", "nobody", "--"],
    )
    assert line == (
        "( cd '/my dir' && exec runuser -u nobody -- env 'X=a'\"'\"'b' bash -c 'echo $X; exit 3'"
        " ) </dev/null 2>'/tmp/.rock-harbor-s 1.stderr'"
    )


def test_image_tag_is_a_valid_local_tag() -> None:
    assert shell.image_tag("Hello World__v2", "ABCdef0123456789") == (
        "rock-harbor/hello-world-v2:abcdef012345"
    )
    assert shell.image_tag("___", "") == "rock-harbor/task:latest"
