"""Every public entry point of the SDK, given bad arguments, raises a typed `RockError`.

Never a foreign exception (TypeError, AttributeError, UnicodeEncodeError, ...), a hang or a
silent success: each case is asserted by type and message. What goes on the wire is refused
by the schema before it is sent, so after every refusal the sandbox still works on the same
link (the link was never dropped, nothing was deleted).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import anyio
import pytest

from rock_core import Cluster
from rock_core._connection import AgentConnection
from rock_sdk import (
    BadRequest,
    InteractiveProcess,
    NotFound,
    RockError,
    Sandbox,
    SandboxCluster,
    SandboxConfig,
    SandboxNotFound,
    SandboxState,
    open_cluster,
)

from ..conftest import SH_IMAGE

pytestmark = pytest.mark.anyio

SMALL = SandboxConfig(image=SH_IMAGE, memory="64m", cpus=0.25)
Call = Callable[[Sandbox, SandboxCluster], Awaitable[object]]


@pytest.fixture(scope="module")
def sdk(cluster: Cluster) -> SandboxCluster:
    return SandboxCluster(cluster)


@pytest.fixture(scope="module")
async def target(sdk: SandboxCluster) -> AsyncIterator[Sandbox]:
    sandbox = await sdk.create_sandbox(SMALL)
    await sandbox.write_file("/tmp/binary", b"ab\xffcd")
    try:
        yield sandbox
    finally:
        await sandbox.delete()


def invalid(request: str, field: str) -> str:
    return f"invalid {request!r} request: {field}"


async def forward(sb: Sandbox, **kwargs: object) -> None:
    async with sb.expose_port(**kwargs):
        pass


async def pool(sdk: SandboxCluster, **kwargs: object) -> None:
    async with sdk.open_pool(SMALL, **kwargs):
        pass


async def enter(manager: AbstractAsyncContextManager[object]) -> None:
    async with manager:
        pass


def sync(make: Callable[[], object]) -> Awaitable[object]:
    async def call() -> object:
        return make()

    return call()


# (what, call, error class, message); "{host}" stands for the host's id.
CASES: list[tuple[str, Call, type[RockError], str]] = [
    # ---------------------------------------------------------------- arun
    (
        "arun bytes",
        lambda sb, _: sb.arun(b"echo hi"),
        BadRequest,
        invalid("run", "command b'echo hi': Expected `str`, got `bytes`"),
    ),
    (
        "arun int",
        lambda sb, _: sb.arun(123),
        BadRequest,
        invalid("run", "command 123: Expected `str`, got `int`"),
    ),
    (
        "arun None",
        lambda sb, _: sb.arun(None),
        BadRequest,
        invalid("run", "command None: Expected `str`, got `None`"),
    ),
    (
        "arun not UTF-8",
        lambda sb, _: sb.arun("echo \udcff"),
        BadRequest,
        invalid(
            "run",
            "text must be valid Unicode (UTF-8): 'utf-8' codec can't encode character"
            " '\\udcff' in position 5: surrogates not allowed",
        ),
    ),
    (
        "arun timeout str",
        lambda sb, _: sb.arun("true", timeout="5"),
        BadRequest,
        invalid("run", "timeout '5': Expected `float | null`, got `str`"),
    ),
    (
        "arun timeout nan",
        lambda sb, _: sb.arun("true", timeout=math.nan),
        BadRequest,
        invalid("run", "timeout nan: Expected `float` > 0.0"),
    ),
    (
        "arun timeout -1",
        lambda sb, _: sb.arun("true", timeout=-1),
        BadRequest,
        invalid("run", "timeout -1: Expected `float` > 0.0"),
    ),
    (
        "arun timeout inf",
        lambda sb, _: sb.arun("true", timeout=math.inf),
        BadRequest,
        invalid("run", "timeout inf: Expected `float` <= 315360000.0"),
    ),
    (
        "arun idle_timeout nan",
        lambda sb, _: sb.arun("true", idle_timeout=math.nan),
        BadRequest,
        invalid("run", "idle_timeout nan: Expected `float` > 0.0"),
    ),
    (
        "arun session int",
        lambda sb, _: sb.arun("true", session=123),
        BadRequest,
        invalid("run", "session 123: Expected `str`, got `int`"),
    ),
    (
        "arun session empty",
        lambda sb, _: sb.arun("true", session=""),
        BadRequest,
        invalid(
            "run",
            "session '': must be 1 to 128 letters, digits or '_.:@+-', starting with a letter"
            " or digit",
        ),
    ),
    (
        "arun output_limit -1",
        lambda sb, _: sb.arun("true", output_limit=-1),
        BadRequest,
        invalid("run", "output_limit -1: Expected `int` >= 0"),
    ),
    (
        "arun output_limit str",
        lambda sb, _: sb.arun("true", output_limit="x"),
        BadRequest,
        invalid("run", "output_limit 'x': Expected `int`, got `str`"),
    ),
    (
        "arun on_output not callable",
        lambda sb, _: sb.arun("echo x", on_output=5),
        BadRequest,
        "on_output must be a callable taking each chunk of output (bytes), or None, got 5",
    ),
    (
        "arun check str",
        lambda sb, _: sb.arun("true", check="yes"),
        BadRequest,
        "check must be True or False, got 'yes'",
    ),
    # ---------------------------------------------------------------- execute
    (
        "execute str",
        lambda sb, _: sb.execute("ls"),
        BadRequest,
        "execute takes an argv list; use arun() for a shell command line",
    ),
    (
        "execute [int]",
        lambda sb, _: sb.execute([123]),
        BadRequest,
        invalid("exec", "argv[0]: Expected `str`, got `int`"),
    ),
    (
        "execute []",
        lambda sb, _: sb.execute([]),
        BadRequest,
        invalid("exec", "argv []: Expected `array` of length >= 1"),
    ),
    (
        "execute None",
        lambda sb, _: sb.execute(None),
        BadRequest,
        "argv must be a list such as ['ls', '-l'], got None",
    ),
    (
        "execute stdin int",
        lambda sb, _: sb.execute(["cat"], stdin=123),
        BadRequest,
        "stdin must be bytes or str, got 123",
    ),
    (
        "execute env value int",
        lambda sb, _: sb.execute(["true"], env={"A": 1}),
        BadRequest,
        invalid("exec", "env[...]: Expected `str`, got `int`"),
    ),
    (
        "execute env str",
        lambda sb, _: sb.execute(["true"], env="A=1"),
        BadRequest,
        "env must be a dict of names to values, got 'A=1'",
    ),
    (
        "execute env NUL",
        lambda sb, _: sb.execute(["true"], env={"A": "x\x00y"}),
        BadRequest,
        invalid("exec", "env[...]: must be text with no NUL byte"),
    ),
    (
        "execute cwd relative",
        lambda sb, _: sb.execute(["true"], cwd="rel"),
        BadRequest,
        invalid(
            "exec",
            "cwd 'rel': must be empty or an absolute path (starting with '/') with no NUL byte",
        ),
    ),
    (
        "execute timeout nan",
        lambda sb, _: sb.execute(["true"], timeout=math.nan),
        BadRequest,
        invalid("exec", "timeout nan: Expected `float` > 0.0"),
    ),
    (
        "execute check str",
        lambda sb, _: sb.execute(["true"], check="no"),
        BadRequest,
        "check must be True or False, got 'no'",
    ),
    # ---------------------------------------------------------------- files
    (
        "write_file Path",
        lambda sb, _: sb.write_file("/tmp/x", Path("/etc/hosts")),
        BadRequest,
        "data must be bytes or str, got PosixPath('/etc/hosts'): to copy a local file, use"
        " upload()",
    ),
    (
        "write_file int",
        lambda sb, _: sb.write_file("/tmp/x", 123),
        BadRequest,
        "data must be bytes or str, got 123",
    ),
    (
        "write_file None",
        lambda sb, _: sb.write_file("/tmp/x", None),
        BadRequest,
        "data must be bytes or str, got None",
    ),
    (
        "write_file mode -1",
        lambda sb, _: sb.write_file("/tmp/x", b"x", mode=-1),
        BadRequest,
        invalid("write", "mode -1: Expected `int` >= 0"),
    ),
    (
        "write_file mode str",
        lambda sb, _: sb.write_file("/tmp/x", b"x", mode="644"),
        BadRequest,
        invalid("write", "mode '644': Expected `int`, got `str`"),
    ),
    (
        "write_file path int",
        lambda sb, _: sb.write_file(123, b"x"),
        BadRequest,
        invalid("write", "path 123: Expected `str`, got `int`"),
    ),
    (
        "write_text int",
        lambda sb, _: sb.write_text("/tmp/x", 123),
        BadRequest,
        "text must be a str, got 123",
    ),
    (
        "write_text encoding",
        lambda sb, _: sb.write_text("/tmp/x", "x", encoding="nope"),
        BadRequest,
        "unknown encoding 'nope'",
    ),
    (
        "write_text not encodable",
        lambda sb, _: sb.write_text("/tmp/x", "é", encoding="ascii"),
        BadRequest,
        "text cannot be written as ascii: 'ascii' codec can't encode character '\\xe9' in"
        " position 0: ordinal not in range(128)",
    ),
    (
        "read_file int",
        lambda sb, _: sb.read_file(123),
        BadRequest,
        invalid("read", "path 123: Expected `str`, got `int`"),
    ),
    (
        "read_file relative",
        lambda sb, _: sb.read_file("rel"),
        BadRequest,
        invalid(
            "read", "path 'rel': must be an absolute path (starting with '/') with no NUL byte"
        ),
    ),
    (
        "read_text encoding",
        lambda sb, _: sb.read_text("/etc/hostname", encoding="nope"),
        BadRequest,
        "unknown encoding 'nope'",
    ),
    (
        "read_text not text",
        lambda sb, _: sb.read_text("/tmp/binary"),
        BadRequest,
        "file /tmp/binary is not utf-8 text (invalid start byte at byte 2); read_file()"
        " returns its bytes",
    ),
    (
        "upload local int",
        lambda sb, _: sb.upload(123, "/tmp"),
        BadRequest,
        "upload: local must be a local path (str or os.PathLike), not int",
    ),
    (
        "upload remote int",
        lambda sb, _: sb.upload("/etc/hostname", 123),
        BadRequest,
        "upload: remote must be a str (an absolute path in the sandbox), not int",
    ),
    (
        "download remote int",
        lambda sb, _: sb.download(123, "/tmp/dl"),
        BadRequest,
        "download: remote must be a str (an absolute path in the sandbox), not int",
    ),
    (
        "download local int",
        lambda sb, _: sb.download("/etc/hostname", 123),
        BadRequest,
        "download: local must be a local path (str or os.PathLike), not int",
    ),
    # ---------------------------------------------------------------- sessions
    (
        "create_session int",
        lambda sb, _: sb.create_session(123),
        BadRequest,
        invalid("session_create", "session 123: Expected `str`, got `int`"),
    ),
    (
        "create_session env",
        lambda sb, _: sb.create_session("s1", env={"A": 1}),
        BadRequest,
        invalid("session_create", "env[...]: Expected `str`, got `int`"),
    ),
    (
        "create_session cwd relative",
        lambda sb, _: sb.create_session("s2", cwd="rel"),
        BadRequest,
        invalid(
            "session_create",
            "cwd 'rel': must be empty or an absolute path (starting with '/') with no NUL byte",
        ),
    ),
    (
        "close_session int",
        lambda sb, _: sb.close_session(123),
        BadRequest,
        invalid("session_close", "session 123: Expected `str`, got `int`"),
    ),
    (
        "start_interactive int",
        lambda sb, _: sb.start_interactive(123),
        BadRequest,
        invalid("run", "command 123: Expected `str`, got `int`"),
    ),
    (
        "start_interactive output_limit",
        lambda sb, _: sb.start_interactive("cat", output_limit=-1),
        BadRequest,
        invalid("run", "output_limit -1: Expected `int` >= 0"),
    ),
    # ---------------------------------------------------------------- timeouts, images, ports
    (
        "set_timeouts nan",
        lambda sb, _: sb.set_timeouts(idle_timeout=math.nan),
        BadRequest,
        invalid("timeouts", "idle_timeout nan: Expected `float` > 0.0"),
    ),
    (
        "set_timeouts -1",
        lambda sb, _: sb.set_timeouts(lifetime=-1),
        BadRequest,
        invalid("timeouts", "lifetime -1: Expected `float` > 0.0"),
    ),
    (
        "set_timeouts str",
        lambda sb, _: sb.set_timeouts(auto_delete_after="5"),
        BadRequest,
        invalid("timeouts", "auto_delete_after '5': Expected `float | null`, got `str`"),
    ),
    (
        "set_timeouts on_expire",
        lambda sb, _: sb.set_timeouts(on_expire="boom"),
        BadRequest,
        invalid("timeouts", "on_expire 'boom': Invalid enum value 'boom'"),
    ),
    (
        "expose_port 0",
        lambda sb, _: forward(sb, port=0),
        BadRequest,
        "port must be between 1 and 65535, got 0",
    ),
    (
        "expose_port 70000",
        lambda sb, _: forward(sb, port=70000),
        BadRequest,
        "port must be between 1 and 65535, got 70000",
    ),
    (
        "expose_port str",
        lambda sb, _: forward(sb, port="80"),
        BadRequest,
        "port must be between 1 and 65535, got '80'",
    ),
    (
        "expose_port local_port",
        lambda sb, _: forward(sb, port=80, local_port=-1),
        BadRequest,
        "local_port must be a whole number between 0 and 65535, got -1",
    ),
    (
        "expose_port on_error",
        lambda sb, _: forward(sb, port=80, on_error="log"),
        BadRequest,
        "on_error must be a callable taking the error of a failed connection, or None, got 'log'",
    ),
    (
        "commit changes str",
        lambda sb, _: sb.commit("rock-test/never:1", changes="ENV A=1"),
        BadRequest,
        "changes takes a list of Dockerfile instructions, not one string",
    ),
    (
        "commit changes None",
        lambda sb, _: sb.commit("rock-test/never:1", changes=None),
        BadRequest,
        "changes must be a list such as ['ENV A=1'], got None",
    ),
    (
        "commit changes [int]",
        lambda sb, _: sb.commit("rock-test/never:1", changes=[1]),
        BadRequest,
        invalid("commit", "changes[0]: Expected `str`, got `int`"),
    ),
    (
        "commit image int",
        lambda sb, _: sb.commit(123),
        BadRequest,
        invalid("commit", "image 123: Expected `str`, got `int`"),
    ),
    # ---------------------------------------------------------------- configs and Sandbox()
    (
        "config pids str",
        lambda *_: sync(lambda: Sandbox(SandboxConfig(pids="12"))),
        BadRequest,
        "invalid sandbox config: pids '12': Expected `int`, got `str`",
    ),
    (
        "config memory float",
        lambda *_: sync(lambda: Sandbox(SandboxConfig(memory=1.5))),
        BadRequest,
        "memory must be a size such as '1g' or a number of bytes, got 1.5",
    ),
    (
        "config cpus str",
        lambda *_: sync(lambda: Sandbox(SandboxConfig(cpus="2"))),
        BadRequest,
        "invalid sandbox config: cpus '2': Expected `float`, got `str`",
    ),
    (
        "config cpus nan",
        lambda *_: sync(lambda: Sandbox(SandboxConfig(cpus=math.nan))),
        BadRequest,
        "invalid sandbox config: cpus nan: Expected `float` >= 0.01",
    ),
    (
        "config labels None",
        lambda *_: sync(lambda: Sandbox(SandboxConfig(labels=None))),
        BadRequest,
        "invalid sandbox config: labels None: Expected `object`, got `None`",
    ),
    (
        "config env int",
        lambda *_: sync(lambda: Sandbox(SandboxConfig(env={"A": 1}))),
        BadRequest,
        "invalid sandbox config: env[...]: Expected `str`, got `int`",
    ),
    (
        "config image None",
        lambda *_: sync(lambda: Sandbox(SandboxConfig(image=None))),
        BadRequest,
        "invalid sandbox config: image None: Expected `str`, got `None`",
    ),
    (
        "config sandbox_id int",
        lambda *_: sync(lambda: Sandbox(SandboxConfig(sandbox_id=123))),
        BadRequest,
        "invalid sandbox config: sandbox_id 123: Expected `str | null`, got `int`",
    ),
    (
        "config startup_timeout",
        lambda *_: sync(lambda: Sandbox(SandboxConfig(startup_timeout=-1))),
        BadRequest,
        "startup_timeout must be a positive number of seconds, or None to wait without a limit,"
        " got -1",
    ),
    (
        "Sandbox config str",
        lambda *_: sync(lambda: Sandbox("x")),
        BadRequest,
        "config must be a SandboxConfig or None, got 'x'",
    ),
    (
        "Sandbox cluster str",
        lambda *_: sync(lambda: Sandbox(cluster="x")),
        BadRequest,
        "cluster must be a cluster (open_cluster) or None, got 'x'",
    ),
    (
        "Sandbox sandbox_id int",
        lambda _, sdk: Sandbox(SMALL, cluster=sdk, sandbox_id=123).start(),
        BadRequest,
        invalid("create", "sandbox_id 123: Expected `str`, got `int`"),
    ),
    # ---------------------------------------------------------------- the SDK cluster
    (
        "create_sandbox config str",
        lambda _, sdk: sdk.create_sandbox("x"),
        BadRequest,
        "config must be a SandboxConfig or None, got 'x'",
    ),
    (
        "create_sandbox id with a slash",
        lambda _, sdk: sdk.create_sandbox(SMALL, sandbox_id="x/../y"),
        BadRequest,
        invalid(
            "create",
            "sandbox_id 'x/../y': must be 1 to 100 letters, digits, '-', '_' or '.', starting"
            " with a letter or digit",
        ),
    ),
    (
        "attach cluster str",
        lambda *_: sync(lambda: Sandbox.attach("x", "sb-1")),
        BadRequest,
        "cluster must be a cluster (open_cluster), got 'x'",
    ),
    (
        "sandbox int",
        lambda _, sdk: sync(lambda: sdk.sandbox(123)),
        SandboxNotFound,
        "no sandbox 123 in this cluster",
    ),
    (
        "drain_host unknown",
        lambda _, sdk: sync(lambda: sdk.drain_host("nowhere")),
        NotFound,
        "no host 'nowhere' in this cluster (hosts: ['{host}'])",
    ),
    (
        "drain_host flag str",
        lambda _, sdk: sync(lambda: sdk.drain_host("{host}", "no")),
        BadRequest,
        "draining must be True or False, got 'no'",
    ),
    (
        "create_many n -1",
        lambda _, sdk: sdk.create_many(SMALL, -1),
        BadRequest,
        "n must be a whole number >= 0, got -1",
    ),
    (
        "create_many n str",
        lambda _, sdk: sdk.create_many(SMALL, "3"),
        BadRequest,
        "n must be a whole number >= 0, got '3'",
    ),
    (
        "create_many concurrency",
        lambda _, sdk: sdk.create_many(SMALL, 1, concurrency="x"),
        BadRequest,
        "concurrency must be a whole number >= 1, got 'x'",
    ),
    (
        "create_many on_progress",
        lambda _, sdk: sdk.create_many(SMALL, 1, on_progress=5),
        BadRequest,
        "on_progress must be a callable taking a CreateProgress, or None, got 5",
    ),
    (
        "create_many progress",
        lambda _, sdk: sdk.create_many(SMALL, 1, progress="yes"),
        BadRequest,
        "progress must be True, False or a text stream, got 'yes'",
    ),
    (
        "create_many config str",
        lambda _, sdk: sdk.create_many("x", 1),
        BadRequest,
        "config must be a list such as [SandboxConfig(...), ...], got 'x'",
    ),
    (
        "open_pool min_size -1",
        lambda _, sdk: pool(sdk, min_size=-1),
        BadRequest,
        "min_size must be a whole number >= 0, got -1",
    ),
    (
        "open_pool max_size below min_size",
        lambda _, sdk: pool(sdk, min_size=2, max_size=1),
        BadRequest,
        "max_size must be >= min_size and >= 1, got min_size=2, max_size=1",
    ),
    (
        "open_pool min_size str",
        lambda _, sdk: pool(sdk, min_size="1"),
        BadRequest,
        "min_size must be a whole number >= 0, got '1'",
    ),
    (
        "open_pool shrink_after nan",
        lambda _, sdk: pool(sdk, shrink_after=math.nan),
        BadRequest,
        "shrink_after must be a positive, finite number of seconds, got nan",
    ),
    (
        "open_pool prepare",
        lambda _, sdk: pool(sdk, prepare=5),
        BadRequest,
        "prepare must be a callable taking a Sandbox (async), or None, got 5",
    ),
    (
        "open_pool session",
        lambda _, sdk: pool(sdk, session="yes"),
        BadRequest,
        "session must be True or False, got 'yes'",
    ),
    (
        "warm_image int",
        lambda _, sdk: sdk.warm_image(123),
        BadRequest,
        "host {host}: " + invalid("image_warm", "image 123: Expected `str`, got `int`"),
    ),
    (
        "prune_images max_percent nan",
        lambda _, sdk: sdk.prune_images(max_percent=math.nan, dry_run=True),
        BadRequest,
        "host {host}: " + invalid("images_prune", "max_percent nan: Expected `float` >= 0.0"),
    ),
]


def link_of(sandbox: Sandbox) -> AgentConnection:
    return sandbox.cluster.connection(sandbox.sandbox_id)


@pytest.mark.parametrize(
    ("call", "error", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
async def test_a_bad_argument_is_a_typed_error_and_the_sandbox_still_works(
    target: Sandbox, sdk: SandboxCluster, call: Call, error: type[RockError], message: str
) -> None:
    (host,) = sdk.hosts
    link = link_of(target)
    records = {r.sandbox_id: r.state for r in sdk.core.records()}
    with anyio.fail_after(30):  # a hang fails the test
        with pytest.raises(RockError) as info:
            await call(target, _HostNamed(sdk, host))
    assert type(info.value) is error
    assert str(info.value) == message.replace("{host}", host)
    # Nothing was sent that the agent would refuse: same link, same sandboxes, still working.
    assert link_of(target) is link and not link.closed
    assert target.state is SandboxState.RUNNING
    assert (await target.arun("echo still")).output == "still\n"
    now = {r.sandbox_id: r.state for r in sdk.core.records()}
    assert {k: v for k, v in now.items() if k in records} == records
    assert set(now) == set(records)  # no sandbox made (or forgotten) on the way


class _HostNamed(SandboxCluster):
    """The SDK cluster with "{host}" in a host id argument replaced by the real host id."""

    def __init__(self, sdk: SandboxCluster, host: str) -> None:
        super().__init__(sdk.core)
        self._host = host

    def drain_host(self, host_id: str, draining: bool = True) -> None:
        super().drain_host(host_id.replace("{host}", self._host), draining)


async def test_interactive_process_arguments(py_sandbox: Sandbox) -> None:
    # bash: on busybox, input sent right after a start is sometimes lost (a separate bug).
    target = py_sandbox
    link = link_of(target)
    await target.create_session("i-args")
    process = await target.start_interactive("echo ready; head -n 1", session="i-args")
    await process.expect("ready", timeout=10)
    assert isinstance(process, InteractiveProcess)
    cases: list[tuple[Callable[[], Awaitable[object]], str]] = [
        (
            lambda: process.expect("x", timeout=math.nan),
            invalid("expect", "timeout nan: Expected `float` > 0.0"),
        ),
        (
            lambda: process.expect(timeout=1),
            invalid("expect", "patterns []: Expected `array` of length >= 1"),
        ),
        (
            lambda: process.expect(123, timeout=1),
            invalid("expect", "patterns[0]: Expected `str`, got `int`"),
        ),
        (lambda: process.send(123), "data must be bytes or str, got 123"),
        (lambda: process.sendline(123), "line must be a str, got 123"),
        (
            lambda: process.send("\udcff"),
            "data must be valid Unicode text (UTF-8): 'utf-8' codec can't encode character"
            " '\\udcff' in position 0: surrogates not allowed",
        ),
        (
            lambda: process.wait(timeout=math.nan),
            invalid("wait", "timeout nan: Expected `float` > 0.0"),
        ),
    ]
    for call, message in cases:
        with anyio.fail_after(30), pytest.raises(BadRequest) as info:
            await call()
        assert type(info.value) is BadRequest
        assert str(info.value) == message
    # The program still runs and answers on the same link.
    await process.sendline("ping")
    match = await process.expect("ping", timeout=10)
    assert match.match == "ping"
    result = await process.wait(timeout=10)  # head read its line and exited
    assert result.exit_code == 0
    assert link_of(target) is link and not link.closed


async def test_pool_arguments(sdk: SandboxCluster) -> None:
    async with sdk.open_pool(SMALL, min_size=1, name="args-pool") as warm:
        sandbox = await warm.acquire()
        cases: list[tuple[Callable[[], Awaitable[object]], str]] = [
            (lambda: warm.release(123), "release takes a Sandbox or a sandbox id, got 123"),
            (lambda: warm.release(sandbox, reset="yes"), "reset must be True or False, got 'yes'"),
            (lambda: warm.wait_ready("1"), "count must be a whole number >= 0, got '1'"),
            (lambda: enter(warm.sandbox(reset="no")), "reset must be True or False, got 'no'"),
            (
                lambda: warm.wait_ready(5),
                "pool 'args-pool' holds at most 1 sandboxes; cannot wait for 5 ready",
            ),
        ]
        for call, message in cases:
            with anyio.fail_after(30), pytest.raises(BadRequest) as info:
                await call()
            assert str(info.value) == message
        assert (await sandbox.arun("echo pooled")).output == "pooled\n"
        await warm.release(sandbox)
    assert sandbox.state is SandboxState.DELETED


async def test_open_cluster_options_through_the_sdk(docker_engine: None) -> None:
    cases: list[tuple[dict[str, object], str]] = [
        (
            {"lease": 2},
            "lease (2 s) must be longer than heartbeat + heartbeat_timeout (5.0 + 10.0 = 15 s):"
            " a live link can be silent that long, and an agent drops a link silent for longer"
            " than its lease",
        ),
        ({"lease": True}, "lease must be a positive, finite number of seconds, got True"),
        (
            {"heartbeat": math.inf},
            "heartbeat must be a positive, finite number of seconds, got inf",
        ),
        (
            {"queue_timeout": "60"},
            "queue_timeout must be a positive number of seconds, or None to wait without a"
            " limit, got '60'",
        ),
        ({"max_starts": 0}, "max_starts must be a whole number >= 1, got 0"),
    ]
    for kwargs, message in cases:
        with pytest.raises(BadRequest) as info:
            async with open_cluster(**kwargs):
                pass
        assert str(info.value) == message
