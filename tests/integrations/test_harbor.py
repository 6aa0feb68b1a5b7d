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

from ..conftest import PY_IMAGE, SH_IMAGE

ROOT = Path(__file__).resolve().parents[2]
TASK = Path(__file__).resolve().parent / "harbor_task"
SCRIPTS = Path(__file__).resolve().parent / "harbor_scripts"  # run by the venv's python
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


@pytest.mark.docker
@pytest.mark.slow
def test_use_cluster_places_and_builds_on_the_given_cluster(
    tmp_path: Path, built: list[str]
) -> None:
    built.append("rock-harbor/cluster-task")
    task = with_dockerfile(make_task(tmp_path, "cluster-task"))
    done = run_harbor("python", SCRIPTS / "on_cluster.py", task, tmp_path / "trials", cwd=tmp_path)
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


@pytest.mark.docker
@pytest.mark.slow
def test_the_environment_runs_harbors_calls_on_a_sandbox(tmp_path: Path) -> None:
    script = SCRIPTS / "drive_environment.py"
    done = run_harbor("python", script, tmp_path, PY_IMAGE, SH_IMAGE, cwd=tmp_path)
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


@pytest.mark.docker
@pytest.mark.slow
def test_an_exec_with_more_stderr_than_read_file_returns_still_answers(tmp_path: Path) -> None:
    # Its stderr is cut (as its stdout would be), never a BadRequest out of exec.
    done = run_harbor("python", SCRIPTS / "big_stderr.py", tmp_path, PY_IMAGE, cwd=tmp_path)
    out = json.loads(done.stdout.splitlines()[-1])
    assert out == {
        "stdout": "done\n",
        "code": 4,
        "stderr_start": "eee",
        "stderr_large": True,
        "next": "next\n",
    }


@pytest.mark.docker
@pytest.mark.slow
def test_a_cancelled_exec_ends_its_command_in_the_sandbox(tmp_path: Path) -> None:
    done = run_harbor("python", SCRIPTS / "cancelled_exec.py", tmp_path, PY_IMAGE, cwd=tmp_path)
    out = json.loads(done.stdout.splitlines()[-1])
    assert out == {"timed_out": True, "ticked": True, "still_ticking": False}
