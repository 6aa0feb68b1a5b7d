"""An agent inside a sandbox (no network) calling the caller's model server, locally or over SSH.

    python3 examples/model_server_in_sandbox.py [ssh://root@127.0.0.1:2222]

The caller runs a small OpenAI-style HTTP server (a stand-in for the trainer's inference
server); `expose_host_port` gives the sandbox a URL for it, and a busybox `wget` inside calls
it twice, then once more after the server stopped: that connection is reset inside, and the
error is reported here. With an SSH address it uses the test sshd's keys in /tmp/rock-sshd.
"""

import http.server
import sys
import threading
from pathlib import Path

import anyio

from rock_sdk import RockError, SandboxConfig, SshOptions, open_cluster

TEST_SSHD = Path("/tmp/rock-sshd")


class Completions(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"object": "list", "data": [{"id": "policy-v1"}]}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


async def main(hosts: list[str], ssh: SshOptions | None) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Completions)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    config = SandboxConfig(image="rock-test/busybox:latest", memory="64m")  # network off
    async with open_cluster(hosts, ssh=ssh) as cluster:
        sb = await cluster.create_sandbox(config)

        reported = anyio.Event()

        def failed(error: RockError) -> None:
            print(f"a connection failed: {type(error).__name__}")
            reported.set()

        async with sb.expose_host_port(server.server_port, on_error=failed) as api_base:
            for _ in range(2):
                got = await sb.execute(["wget", "-q", "-O", "-", f"{api_base}/v1/models"])
                print(f"inside: {got.stdout}")
            server.shutdown()
            server.server_close()
            got = await sb.execute(["wget", "-q", "-O", "-", f"{api_base}/v1/models"])
            print(f"inside, the server stopped: exit code {got.exit_code}")
            await reported.wait()  # reported before the reset inside: set already
            print(f"{api_base.connections} connections, {len(api_base.errors)} failed")
        await sb.delete()
    thread.join()


if __name__ == "__main__":
    addresses = sys.argv[1:] or ["local"]
    options = None
    if any(a.startswith("ssh://") for a in addresses):
        options = SshOptions(
            known_hosts=str(TEST_SSHD / "known_hosts"), client_keys=[str(TEST_SSHD / "id")]
        )
    anyio.run(main, addresses, options)
