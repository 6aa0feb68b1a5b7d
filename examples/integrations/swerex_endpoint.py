"""SWE-ReX (and so SWE-agent) on a sandbox of the kit, through SWE-ReX's `remote` deployment.

Run it with `python examples/integrations/swerex_endpoint.py` (after `pip install
'rock-kit[swerex]'` and `bash scripts/setup-host.sh`). SWE-agent points at the same endpoint
with its remote deployment: ``--env.deployment.type=remote --env.deployment.host=<url>
--env.deployment.port=<port> --env.deployment.auth_token=<key>``.
"""

import anyio
from swerex.deployment.remote import RemoteDeployment
from swerex.exceptions import NonZeroExitCodeError
from swerex.runtime.abstract import BashAction, CreateBashSessionRequest, ReadFileRequest

from rock_sdk import Sandbox, SandboxConfig
from rock_sdk.integrations.swerex import serve_swerex


async def main() -> None:
    async with (
        Sandbox(SandboxConfig(image="python:3.11", memory="512m")) as sb,
        serve_swerex(sb, api_key="a-secret") as endpoint,
    ):
        print("serving", endpoint.url)
        deployment = RemoteDeployment(
            host=f"http://{endpoint.host}", port=endpoint.port, auth_token="a-secret", timeout=10
        )
        await deployment.start()
        runtime = deployment.runtime
        await runtime.create_session(CreateBashSessionRequest())
        obs = await runtime.run_in_session(BashAction(command="cd /tmp && echo 'x = 6 * 7' > m.py"))
        obs = await runtime.run_in_session(BashAction(command="python3 -c 'import m; print(m.x)'"))
        print(repr(obs.output), obs.exit_code)  # '42\n' 0
        content = await runtime.read_file(ReadFileRequest(path="/tmp/m.py"))
        print(repr(content.content))  # 'x = 6 * 7\n'
        try:
            await runtime.run_in_session(BashAction(command="test -e /nowhere"))
        except NonZeroExitCodeError:
            print("test -e /nowhere failed, as SWE-ReX reports it")
        await deployment.stop()  # closes the sessions; leaving the block deletes the sandbox


if __name__ == "__main__":
    anyio.run(main)
