"""Several trainer processes, one fleet: the shared pieces of the test and the bench.

- `start_agents` starts a socket agent on each namespace host, with a start cap and a sandbox
  limit, running this checkout's code (an agent that sshd would start on demand runs the
  installed one). Cores reach it over SSH as usual: the socket is where `NetnsHost.url` says.
- `HeldCounter` counts, from the engine itself (``docker ps``, every few tens of ms), the
  containers each host holds: the most it ever saw is the proof no host went over its limit,
  independent of the agent's own counters.
- `run_trainers` runs trainer processes (``python -m tests.cluster._shared_fleet``), each
  embedding its own core over the same hosts and making `creates` sandboxes at once; each
  holds its sandbox `hold` seconds and deletes it. It returns what each trainer printed.
- `agent_counts` reads each agent's admission metrics (its own peaks and refusals).

Plain synchronous code for the processes (subprocess), usable from a test or a bench script.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio

from rock_core import QueueTimedOut, RockError, SshOptions, open_cluster
from rock_core._metrics_read import read_metrics
from rock_core.protocol import SandboxSpec

from ._netns import NetnsCluster, NetnsHost

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
ENV = {"PYTHONPATH": f"{SRC}{os.pathsep}{ROOT}"}
IMAGE = os.environ.get("ROCK_TEST_SH_IMAGE", "rock-test/busybox:latest")


def ssh_options(netns: NetnsCluster) -> SshOptions:
    return SshOptions(
        known_hosts=str(netns.known_hosts), client_keys=[str(netns.client_key)], connect_timeout=5
    )


def start_agents(
    netns: NetnsCluster, *, max_starts: int, max_sandboxes: int
) -> list[subprocess.Popen[bytes]]:
    """A socket agent on every host of `netns`, answering once this returns."""
    procs = []
    for host in netns:
        host.agent_socket.unlink(missing_ok=True)
        argv = [sys.executable, "-m", "rock_agent", "serve", "--socket", str(host.agent_socket)]
        argv += ["--max-starts", str(max_starts), "--max-sandboxes", str(max_sandboxes)]
        procs.append(host.spawn([*argv, "--log-level", "WARNING"], env=ENV))
    deadline = time.monotonic() + 30
    while not all(h.agent_socket.exists() for h in netns):
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            raise RuntimeError("the socket agents did not start")
        time.sleep(0.05)
    return procs


def stop_agents(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def held_on(host_ids: Sequence[str]) -> dict[str, int]:
    """How many containers each host holds now, as the engine lists them (any state)."""
    out = subprocess.run(
        ["docker", "ps", "-a", "--format", '{{.Label "rock.host"}}', "--filter", "label=rock.host"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return {h: out.count(h) for h in host_ids}


class HeldCounter:
    """The most containers each host held at once, seen from the engine while it runs."""

    def __init__(self, hosts: Sequence[NetnsHost], every: float = 0.03) -> None:
        self.host_ids = [h.host_id for h in hosts]
        self.most = dict.fromkeys(self.host_ids, 0)
        self.looks = 0
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for host_id, count in held_on(self.host_ids).items():
                self.most[host_id] = max(self.most[host_id], count)
            self.looks += 1
            self._stop.wait(self._every)

    def __enter__(self) -> HeldCounter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_trainers(
    netns: NetnsCluster,
    trainers: int,
    creates: int,
    *,
    hold: float,
    queue_timeout: float | None,
    timeout: float = 300,
) -> list[dict[str, Any]]:
    """Run `trainers` trainer processes at once; return what each reported (in order)."""
    argv = [sys.executable, "-m", "tests.cluster._shared_fleet", "--creates", str(creates)]
    argv += ["--hold", str(hold), "--known-hosts", str(netns.known_hosts)]
    argv += ["--key", str(netns.client_key), "--queue-timeout", str(queue_timeout or 0)]
    argv += [h.url for h in netns]
    procs = [
        subprocess.Popen(
            [*argv[:3], "--owner", f"trainer-{n}", *argv[3:]],
            cwd=ROOT,
            env={**os.environ, **ENV},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for n in range(trainers)
    ]
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"a trainer failed (exit {proc.returncode}): {err.decode()[-3000:]}")
        reports.append(json.loads(out.decode().strip().splitlines()[-1]))
    return reports


async def agent_counts(netns: NetnsCluster) -> dict[str, dict[str, float]]:
    """Each agent's admission metrics, by host id (`rock_admission_*`)."""
    found: dict[str, dict[str, float]] = {}
    async with open_cluster([h.url for h in netns], ssh=ssh_options(netns), owner="reader") as c:
        for host_id, text in (await read_metrics(c)).items():
            values: dict[str, float] = {}
            for line in text.splitlines():
                if line.startswith("rock_admission_"):
                    name, _, value = line.rpartition(" ")
                    values[name] = float(value)
            found[host_id] = values
    return found


# ------------------------------------------------------------------ one trainer process


async def _train(args: argparse.Namespace) -> dict[str, Any]:
    ssh = SshOptions(known_hosts=args.known_hosts, client_keys=[args.key], connect_timeout=5)
    spec = SandboxSpec(image=IMAGE, cpus=0.1, memory=32 << 20)
    waits = args.queue_timeout or None
    report: dict[str, Any] = {"owner": args.owner, "ok": 0, "timed_out": 0, "errors": []}
    began = time.monotonic()
    async with open_cluster(args.hosts, ssh=ssh, owner=args.owner, queue_timeout=waits) as c:
        report["connected"] = time.monotonic() - began
        began = time.monotonic()
        report["start"] = time.time()  # wall clock: spans across trainer processes

        async def one() -> None:
            try:
                record = await c.create_sandbox(spec)
            except QueueTimedOut:
                report["timed_out"] += 1
                return
            except RockError as exc:
                report["errors"].append(f"{type(exc).__name__}: {exc}")
                return
            report["ok"] += 1
            await anyio.sleep(args.hold)
            await c.delete_sandbox(record.sandbox_id)

        async with anyio.create_task_group() as tg:
            for _ in range(args.creates):
                tg.start_soon(one)
        report["seconds"] = time.monotonic() - began
        report["end"] = time.time()
        report["left"] = len(await c.list_host_sandboxes(owner=args.owner))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description="one trainer: many creates over shared hosts")
    parser.add_argument("hosts", nargs="+")
    parser.add_argument("--owner", required=True)
    parser.add_argument("--creates", type=int, required=True)
    parser.add_argument("--hold", type=float, required=True)
    parser.add_argument("--queue-timeout", type=float, default=0.0)
    parser.add_argument("--known-hosts", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args()
    print(json.dumps(anyio.run(_train, args)), flush=True)


if __name__ == "__main__":
    main()
