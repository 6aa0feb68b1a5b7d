"""Calls every method Harbor uses on a RockEnvironment and prints what came back as JSON.

Run by test_harbor.py with the Harbor venv's python: WORK_DIR PY_IMAGE SH_IMAGE.
"""

import asyncio
import json
import subprocess
import sys
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
        [
            "docker",
            "ps",
            "-a",
            "--filter",
            f"label=harbor.session={session}",
            "--format",
            "{{.State}}",
        ],
        capture_output=True,
        text=True,
        check=True,
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
