"""A cluster reached over SSH only, with a warm pool on top.

    python3 examples/ssh_cluster.py ssh://rl@gpu-01 ssh://cpu-[01-04]

With no address it uses the test sshd that `scripts/setup-host.sh` starts on 127.0.0.1:2222
(its keys and known_hosts are in /tmp/rock-sshd). Each host needs Docker, this package and
sshd; with no rock-agent service there, the core starts one on demand (docs/clusters.md).
"""

import sys
from pathlib import Path

import anyio

from rock_sdk import SandboxConfig, SshOptions, open_cluster

TEST_SSHD = Path("/tmp/rock-sshd")


async def main(hosts: list[str], ssh: SshOptions | None) -> None:
    config = SandboxConfig(image="rock-test/busybox:latest", memory="64m", cpus=0.1)
    async with open_cluster(hosts, ssh=ssh) as cluster:
        print("hosts:", {h: host.state for h, host in cluster.hosts.items()})
        async with cluster.open_pool(config, min_size=2, max_size=4) as pool:
            await pool.wait_ready(2)
            start = anyio.current_time()
            sb = await pool.acquire()
            took = (anyio.current_time() - start) * 1000
            result = await sb.arun("echo hello from $(hostname)")
            print(f"acquired {sb.sandbox_id} in {took:.2f} ms: {result.output.strip()}")
            for host in cluster.statistics().hosts:
                print(f"{host.host_id}: {host.used.sandboxes} sandboxes, {host.used.cpus:g} cpus")
            await pool.release(sb)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        anyio.run(main, sys.argv[1:], None)
    else:
        options = SshOptions(
            known_hosts=str(TEST_SSHD / "known_hosts"), client_keys=[str(TEST_SSHD / "id")]
        )
        anyio.run(main, ["ssh://root@127.0.0.1:2222"], options)
