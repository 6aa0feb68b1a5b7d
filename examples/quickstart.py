"""The quickstart: a sandbox with a stateful shell session and binary-safe files.

Run it with `python examples/quickstart.py` (after `bash scripts/setup-host.sh`).
"""

import anyio

from rock_sdk import Sandbox, SandboxConfig


async def main() -> None:
    async with Sandbox(SandboxConfig(image="python:3.11", memory="1g", cpus=1)) as sb:
        await sb.create_session("bash-1")
        r = await sb.arun("cd /tmp && echo hello", session="bash-1", timeout=30)
        print(repr(r.output), r.exit_code)  # 'hello\n' 0
        r = await sb.arun("pwd", session="bash-1")
        print(repr(r.output))  # '/tmp\n'
        await sb.write_file("/work/data.bin", b"\x00\x01binary")
        print(await sb.read_file("/work/data.bin"))  # b'\x00\x01binary'

        r = await sb.arun("echo partial; sleep 60", session="bash-1", timeout=1)
        print("timed out:", r.timed_out, repr(r.output))  # True 'partial\n'
        print(repr((await sb.arun("pwd", session="bash-1")).output))  # still '/tmp\n'

        await sb.create_session("py")
        repl = await sb.start_interactive("python3 -i -q -u", session="py")
        await repl.expect(r">>> ")
        await repl.sendline("print(6 * 7)")
        print((await repl.expect(r">>> ")).before.strip())  # 42
        await repl.sendline("exit()")
        await repl.wait(timeout=10)


anyio.run(main)
