"""Start a sandbox, open a named session, run one command in it, release the sandbox.

Exercises the ROCK API the way ROCK's examples/sandbox_demo.py does, with only
`rock_sdk.compat.rock` imports: no admin server is needed, the sandbox runs on the local
Docker engine.

    python examples/rock_compat/hello_session.py
"""

import asyncio

from rock_sdk.compat.rock import CreateBashSessionRequest, Sandbox, SandboxConfig


async def main() -> None:
    sandbox = Sandbox(SandboxConfig(image="python:3.11", memory="2g", cpus=1.0))
    await sandbox.start()
    try:
        await sandbox.create_session(CreateBashSessionRequest(session="shell"))
        greeting = await sandbox.arun(cmd="echo hello from $(hostname)", session="shell")
        version = await sandbox.arun(cmd="python3 --version", session="shell")
        print(f"{greeting.output} | {version.output} | exit {version.exit_code}")
    finally:
        await sandbox.stop()  # releases the sandbox: it is deleted


if __name__ == "__main__":
    asyncio.run(main())
