"""The SWE-ReX endpoint, driven by SWE-ReX's own client (`RemoteRuntime`, swe-rex 1.4.0) against
real Docker: sessions, commands, `execute`, files, uploads, the API key and every error shape.
"""

from __future__ import annotations

import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from rock_sdk import (
    BadRequest,
    Sandbox,
    SandboxCluster,
    SandboxConfig,
    SessionNotFound,
    open_cluster,
)
from rock_sdk.integrations.swerex import SwerexEndpoint, serve_swerex

from ..conftest import PY_IMAGE, SH_IMAGE
from .conftest import require

remote = require("swerex.runtime.remote", "swerex")
rex = require("swerex.runtime.abstract", "swerex")
errors = require("swerex.exceptions", "swerex")

KEY = "test-key"
pytestmark = [pytest.mark.anyio, pytest.mark.docker]


@pytest.fixture(scope="module")
async def cluster(docker_engine: None) -> AsyncIterator[SandboxCluster]:
    async with open_cluster(["local"]) as c:
        yield c


@pytest.fixture(scope="module", params=[PY_IMAGE, SH_IMAGE], ids=["bash", "sh"])
async def endpoint(
    request: pytest.FixtureRequest, cluster: SandboxCluster
) -> AsyncIterator[SwerexEndpoint]:
    async with (
        await cluster.create_sandbox(SandboxConfig(image=request.param, memory="256m")) as sb,
        serve_swerex(sb, api_key=KEY) as served,
    ):
        yield served


@pytest.fixture
def runtime(endpoint: SwerexEndpoint) -> Any:
    return remote.RemoteRuntime(host=endpoint.url, auth_token=KEY, timeout=10)


@pytest.fixture
async def session(runtime: Any, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    name = re.sub(r"[^A-Za-z0-9]", "-", request.node.name)[:60]
    await runtime.create_session(rex.CreateBashSessionRequest(session=name))
    yield name
    await runtime.close_session(rex.CloseBashSessionRequest(session=name))


def bash(command: str, session: str, **fields: Any) -> Any:
    return rex.BashAction(command=command, session=session, **fields)


async def test_a_session_keeps_its_state(runtime: Any, session: str) -> None:
    assert (await runtime.is_alive()).is_alive
    first = await runtime.run_in_session(bash("cd /tmp && export A=1; echo hi", session))
    assert (first.output, first.exit_code) == ("hi\n", 0)
    second = await runtime.run_in_session(bash('pwd; echo "$A"', session))
    assert second.output == "/tmp\n1\n"


async def test_check_raise_silent_ignore(runtime: Any, session: str) -> None:
    silent = await runtime.run_in_session(
        bash("echo out; exit_3() { return 3; }; exit_3", session, check="silent")
    )
    assert (silent.output, silent.exit_code) == ("out\n", 3)
    ignored = await runtime.run_in_session(bash("false", session, check="ignore"))
    assert ignored.exit_code is None
    with pytest.raises(errors.NonZeroExitCodeError) as raised:
        await runtime.run_in_session(bash("echo no; false", session, error_msg="setup failed"))
    assert str(raised.value) == (
        "setup failed: Command 'echo no; false' failed with exit code 1."
        " Here is the output:\n'no\\n'"
    )


async def test_a_timeout_interrupts_and_the_session_survives(runtime: Any, session: str) -> None:
    await runtime.run_in_session(bash("export KEPT=yes", session))
    with pytest.raises(errors.CommandTimeoutError) as raised:
        await runtime.run_in_session(bash("sleep 60", session, timeout=1))
    assert str(raised.value) == "timeout after 1.0 seconds while running command 'sleep 60'"
    interrupted = await runtime.run_in_session(rex.BashInterruptAction(session=session))
    assert (interrupted.output, interrupted.exit_code) == ("", 0)
    after = await runtime.run_in_session(bash('echo "$KEPT"', session))
    assert after.output == "yes\n"


async def test_session_errors(runtime: Any, session: str) -> None:
    with pytest.raises(errors.SessionDoesNotExistError, match=r"^session 'nope' does not exist$"):
        await runtime.run_in_session(bash("true", "nope"))
    with pytest.raises(errors.SessionExistsError, match=f"session 'swerex-{session}'"):
        await runtime.create_session(rex.CreateBashSessionRequest(session=session))
    with pytest.raises(errors.SessionDoesNotExistError, match=r"^session 'nope' does not exist$"):
        await runtime.close_session(rex.CloseBashSessionRequest(session="nope"))
    with pytest.raises(ValueError, match=r"^invalid 'session_create' request: session 'swerex-has"):
        await runtime.create_session(rex.CreateBashSessionRequest(session="has space"))
    await runtime.create_session(rex.CreateBashSessionRequest(session="leaving"))
    await runtime.run_in_session(bash("exit 0", "leaving", check="ignore"))
    with pytest.raises(errors.SessionDoesNotExistError, match="'leaving' does not exist"):
        await runtime.run_in_session(bash("true", "leaving"))  # its shell exited


async def test_startup_files_are_sourced(runtime: Any) -> None:
    await runtime.write_file(
        rex.WriteFileRequest(path="/tmp/rc", content="export FROM_RC=sourced\n")
    )
    created = await runtime.create_session(
        rex.CreateBashSessionRequest(session="rc", startup_source=["/tmp/rc"], startup_timeout=10)
    )
    assert created.output == ""
    assert (await runtime.run_in_session(bash('echo "$FROM_RC"', "rc"))).output == "sourced\n"
    await runtime.close_session(rex.CloseBashSessionRequest(session="rc"))


LOOP = (
    "echo 'ready>'; while read -r l; do"
    ' [ "$l" = quit ] && break; echo "got:$l"; echo \'ready>\'; done'
)


async def test_an_interactive_program(runtime: Any, session: str) -> None:
    def line(text: str, **fields: Any) -> Any:
        return bash(text, session, is_interactive_command=True, timeout=20, **fields)

    started = await runtime.run_in_session(line(LOOP, expect=["ready>"]))
    assert (started.output, started.expect_string) == ("", "ready>")
    answer = await runtime.run_in_session(line("hello", expect=["ready>"]))
    assert (answer.output, answer.expect_string) == ("got:hello", "ready>")
    quit_ = bash("quit", session, is_interactive_quit=True, timeout=20)
    assert (await runtime.run_in_session(quit_)).exit_code == 0
    assert (await runtime.run_in_session(bash("echo back", session))).output == "back\n"
    with pytest.raises(ValueError, match=f"^no interactive program runs in session '{session}'$"):
        await runtime.run_in_session(quit_)


async def test_interrupting_an_interactive_program(runtime: Any, session: str) -> None:
    sleeping = bash("echo started; sleep 60", session, is_interactive_command=True, timeout=20)
    sleeping.expect = ["started"]
    started = await runtime.run_in_session(sleeping)
    assert started.expect_string == "started"
    stopped = await runtime.run_in_session(rex.BashInterruptAction(session=session, timeout=5))
    assert stopped.exit_code == 0
    assert (await runtime.run_in_session(bash("echo back", session))).output == "back\n"


async def test_execute(runtime: Any) -> None:
    listed = await runtime.execute(rex.Command(command=["ls", "/nonexistent"]))
    assert listed.exit_code != 0 and "nonexistent" in listed.stderr and listed.stdout == ""
    shell = await runtime.execute(
        rex.Command(
            command='echo "$GREETING"; pwd; echo err >&2',
            shell=True,
            cwd="/tmp",
            env={"GREETING": "hi"},
        )
    )
    assert (shell.stdout, shell.stderr, shell.exit_code) == ("hi\n/tmp\n", "err\n", 0)
    merged = await runtime.execute(
        rex.Command(command="echo a; echo b >&2", shell=True, merge_output_streams=True)
    )
    assert (merged.stdout, merged.stderr) == ("a\nb\n", "")
    with pytest.raises(
        errors.NonZeroExitCodeError, match=r"^build: Command \['false'\] failed with exit code 1"
    ):
        await runtime.execute(rex.Command(command=["false"], check=True, error_msg="build"))
    with pytest.raises(errors.CommandTimeoutError, match=r"^Timeout \(1.0s\) exceeded"):
        await runtime.execute(rex.Command(command=["sleep", "60"], timeout=1))
    with pytest.raises(FileNotFoundError, match="program 'no-such-program' not found"):
        await runtime.execute(rex.Command(command="no-such-program"))


async def test_files(runtime: Any) -> None:
    await runtime.write_file(rex.WriteFileRequest(path="/tmp/new/dir/f.txt", content="héllo\n"))
    read = await runtime.read_file(rex.ReadFileRequest(path="/tmp/new/dir/f.txt"))
    assert read.content == "héllo\n"
    latin = await runtime.read_file(
        rex.ReadFileRequest(path="/tmp/new/dir/f.txt", encoding="latin-1")
    )
    assert latin.content == "héllo\n".encode().decode("latin-1")
    await runtime.execute(rex.Command(command="printf 'a\\377b' > /tmp/bin", shell=True))
    with pytest.raises(ValueError, match=r"^/tmp/bin is not utf-8 text"):
        await runtime.read_file(rex.ReadFileRequest(path="/tmp/bin"))
    lenient = await runtime.read_file(rex.ReadFileRequest(path="/tmp/bin", errors="replace"))
    assert lenient.content == "a\ufffdb"
    with pytest.raises(ValueError, match="unknown encoding: klingon"):
        await runtime.read_file(rex.ReadFileRequest(path="/tmp/bin", encoding="klingon"))
    with pytest.raises(FileNotFoundError, match=r"^/missing: no such file"):
        await runtime.read_file(rex.ReadFileRequest(path="/missing"))
    with pytest.raises(ValueError, match=r"^/tmp is a folder"):
        await runtime.read_file(rex.ReadFileRequest(path="/tmp"))


async def test_upload_a_file_and_a_folder(runtime: Any, tmp_path: Path) -> None:
    (tmp_path / "pkg" / "sub").mkdir(parents=True)
    (tmp_path / "pkg" / "sub" / "mod.py").write_text("X = 1\n")
    (tmp_path / "pkg" / "top.txt").write_text("top\n")
    (tmp_path / "one.bin").write_bytes(bytes(range(256)) * 64)
    await runtime.write_file(rex.WriteFileRequest(path="/up/pkg/kept.txt", content="kept\n"))
    for source, target in (("pkg", "/up/pkg"), ("one.bin", "/up/b/one.bin")):
        await runtime.upload(
            rex.UploadRequest(source_path=str(tmp_path / source), target_path=target)
        )
    found = await runtime.execute(rex.Command(command="cd /up; find . -type f | sort", shell=True))
    assert found.stdout == "./b/one.bin\n./pkg/kept.txt\n./pkg/sub/mod.py\n./pkg/top.txt\n"
    size = await runtime.execute(rex.Command(command=["wc", "-c", "/up/b/one.bin"]))
    assert size.stdout.split()[0] == str(256 * 64)


async def test_close_ends_the_endpoints_sessions(runtime: Any, endpoint: SwerexEndpoint) -> None:
    await runtime.create_session(rex.CreateBashSessionRequest(session="closing"))
    await runtime.close()
    with pytest.raises(errors.SessionDoesNotExistError, match="'closing' does not exist"):
        await runtime.run_in_session(bash("true", "closing"))
    assert (await runtime.is_alive()).is_alive  # the endpoint still serves the sandbox


async def test_the_api_key(endpoint: SwerexEndpoint) -> None:
    for key in ("wrong", ""):
        client = remote.RemoteRuntime(host=endpoint.url, auth_token=key, timeout=10)
        alive = await client.is_alive()
        assert not alive.is_alive
        assert alive.message.endswith("/is_alive. Message: Invalid API Key")
        with pytest.raises(aiohttp.ClientResponseError) as refused:
            await client.execute(rex.Command(command=["true"]))
        assert refused.value.status == 401


async def post(endpoint: SwerexEndpoint, path: str, body: Any, **headers: str) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            endpoint.url + path, json=body, headers={"X-API-Key": KEY, **headers}
        ) as response,
    ):
        return response.status, await response.json()


async def test_a_bad_request_is_422_and_an_unknown_route_404(endpoint: SwerexEndpoint) -> None:
    status, body = await post(endpoint, "/execute", {"cmd": "ls"})
    assert status == 422
    assert body["detail"] == "invalid execute request: Object missing required field `command`"
    status, body = await post(endpoint, "/run_in_session", {"command": "ls", "action_type": "x"})
    assert status == 422
    assert "invalid run_in_session request: Invalid value 'x'" in body["detail"]
    status, body = await post(endpoint, "/nowhere", {})
    assert (status, body) == (404, {"detail": "Not Found"})
    async with (
        aiohttp.ClientSession() as http,
        http.post(endpoint.url + "/upload", data=b"x", headers={"X-API-Key": KEY}) as response,
    ):
        assert response.status == 422
        assert (await response.json())["detail"].startswith(
            "invalid upload request: upload takes a multipart form"
        )


async def test_a_retried_request_gets_the_last_reply(endpoint: SwerexEndpoint) -> None:
    append = {"command": ["sh", "-c", "echo x >> /tmp/retried; wc -l < /tmp/retried"]}
    first = await post(endpoint, "/execute", append, **{"X-Request-ID": "r1"})
    again = await post(endpoint, "/execute", append, **{"X-Request-ID": "r1"})
    fresh = await post(endpoint, "/execute", append, **{"X-Request-ID": "r2"})
    assert first == again and first[1]["stdout"].strip() == "1"
    assert fresh[1]["stdout"].strip() == "2"
    failing = {"command": ["sh", "-c", "echo x >> /tmp/failing; false"], "check": True}
    failed = await post(endpoint, "/execute", failing, **{"X-Request-ID": "r3"})
    assert failed == await post(endpoint, "/execute", failing, **{"X-Request-ID": "r3"})
    assert failed[0] == 511
    assert failed[1]["swerexception"]["class_path"] == "swerex.exceptions.NonZeroExitCodeError"
    lines = await post(endpoint, "/execute", {"command": ["wc", "-l", "/tmp/failing"]})
    assert lines[1]["stdout"].split()[0] == "1"  # the retry did not run the command again


async def test_the_output_limit_and_leaving(cluster: SandboxCluster) -> None:
    async with await cluster.create_sandbox(SandboxConfig(image=SH_IMAGE, memory="64m")) as sb:
        async with serve_swerex(sb, api_key=KEY, output_limit=10) as served:
            client = remote.RemoteRuntime(host=served.url, auth_token=KEY, timeout=10)
            await client.create_session(rex.CreateBashSessionRequest(session="s"))
            cut = await client.run_in_session(rex.BashAction(command="seq 1 100", session="s"))
            assert cut.output.startswith("1\n2\n3\n4\n5\n")
            assert re.search(
                r"\n\[output truncated: 292 bytes in all, kept in /\S+\]\n$", cut.output
            )
        # Leaving closed the endpoint's sessions, and it no longer listens.
        with pytest.raises(SessionNotFound, match="swerex-s"):
            await sb.arun("true", "swerex-s")
        assert not (await client.is_alive()).is_alive  # no longer listening


async def test_bad_arguments(cluster: SandboxCluster) -> None:
    with pytest.raises(BadRequest, match=r"serve_swerex serves a rock_sdk.Sandbox, got 'sb'"):
        async with serve_swerex("sb", api_key=KEY):  # type: ignore[arg-type]
            pass
    sandbox = Sandbox(SandboxConfig(image=SH_IMAGE), cluster=cluster)
    with pytest.raises(BadRequest, match="needs a non-empty api_key"):
        async with serve_swerex(sandbox, api_key=""):
            pass
    with pytest.raises(
        BadRequest, match="output_limit must be between 1 and 15728640 bytes, got 0"
    ):
        async with serve_swerex(sandbox, api_key=KEY, output_limit=0):
            pass
    with pytest.raises(BadRequest, match="port must be between 0 and 65535, got 70000"):
        async with serve_swerex(sandbox, api_key=KEY, port=70000):
            pass
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(BadRequest, match=f"cannot listen on 127.0.0.1:{port}: "):
            async with serve_swerex(sandbox, api_key=KEY, port=port):
                pass
