"""Own a sandbox's lifecycle in an async context manager, switching the client's URL inside.

Exercises the ROCK API the way ROCK's examples/sandbox_proxy_demo.py does: `start()` on
entry, `sandbox.url` set for the runtime calls (kept, unused: there is no admin server or
proxy here), and `stop()` in a `finally`. Only `rock_sdk.compat.rock` imports.

    python examples/rock_compat/managed_lifecycle.py
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from rock_sdk.compat.rock import CreateBashSessionRequest, Sandbox, SandboxConfig


@asynccontextmanager
async def managed_sandbox(
    image: str = "python:3.11", memory: str = "1g", cpus: float = 0.5
) -> AsyncIterator[Sandbox]:
    base_url = "http://127.0.0.1:8080"
    sandbox = Sandbox(SandboxConfig(base_url=base_url, image=image, memory=memory, cpus=cpus))
    try:
        await sandbox.start()
        sandbox.url = "http://127.0.0.1:8081/apis/envs/sandbox/v1"
        yield sandbox
    finally:
        sandbox.url = f"{base_url}/apis/envs/sandbox/v1"
        await sandbox.stop()


async def main() -> None:
    async with managed_sandbox() as sandbox:
        await sandbox.create_session(CreateBashSessionRequest(session="s1"))
        await sandbox.arun(cmd="export ANSWER=42", session="s1")
        result = await sandbox.arun(cmd="echo the answer is $ANSWER", session="s1")
        print(result.output)
    print(f"released; sandbox_id is now {sandbox.sandbox_id}")


if __name__ == "__main__":
    asyncio.run(main())
