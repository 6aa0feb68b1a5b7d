"""Fake agents in a worker process, each on its own unix socket (a helper of bench_scale.py).

Rules:
- One worker serves `count` `rock_core.testing.FakeAgent`s, host ids ``fake-<first>`` to
  ``fake-<first + count - 1>``, each listening on ``<directory>/fake-<index>.sock``. A core
  reaches them as it reaches any socket agent (``unix://`` addresses): real framing, real
  sockets, and the fakes' CPU is this process's, not the core's.
- The agents' settings (start latency, engine rate, room, images) come as one JSON argument,
  so every worker draws the same latency model as the in-process run (draws depend only on
  seed and sandbox id).
- Control runs over the worker's stdin and stdout, one line each way: the worker prints
  ``ready`` once every socket listens; to the line ``starts`` it answers one JSON line with
  each sandbox's [engine wait, latency, slept] in seconds and the worker's CPU seconds so far;
  end of input (or ``quit``) ends it.

The core's side is `open_fake_hosts`: it starts the workers (this file, run as a script),
waits until they listen, and yields their addresses and a way to read the start timings.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import Process, SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

from rock_core.testing import FakeAgent, LognormalLatency, StartLatency


def latency_of(config: dict[str, Any]) -> StartLatency:
    """The start latency the config names: lognormal draws, or a fixed number of seconds."""
    if config["latency"] == "lognormal":
        return LognormalLatency(
            config["median"], config["sigma"], seed=config["seed"], maximum=config["maximum"]
        )
    return float(config["median"])


def starts_of(agents: list[FakeAgent]) -> dict[str, list[float]]:
    """Every sandbox's start timing, across `agents`."""
    return {
        sandbox_id: [start.engine_wait, start.latency, start.slept]
        for agent in agents
        for sandbox_id, start in agent.starts.items()
    }


async def serve(config: dict[str, Any]) -> None:
    """Serve the agents until stdin ends; answer ``starts`` lines meanwhile."""
    directory = Path(config["directory"])
    agents = [
        FakeAgent(
            host_id=f"fake-{index}",
            cpus=config["cpus"],
            memory=config["memory"],
            images=config["images"],
            start_latency=latency_of(config),
            engine_rate=config["engine_rate"],
        )
        for index in range(config["first"], config["first"] + config["count"])
    ]
    async with anyio.create_task_group() as tg:
        for agent in agents:
            listener = await anyio.create_unix_listener(directory / f"{agent.host_id}.sock")

            async def handle(stream: SocketStream, agent: FakeAgent = agent) -> None:
                async with stream:
                    await agent.serve(stream)

            tg.start_soon(listener.serve, handle)
        print("ready", flush=True)
        while True:
            line = await anyio.to_thread.run_sync(sys.stdin.readline)
            if line.strip() == "starts":
                reply = {"starts": starts_of(agents), "cpu": time.process_time()}
                print(json.dumps(reply), flush=True)
            elif not line or line.strip() == "quit":
                break
        tg.cancel_scope.cancel()


class FakeHosts:
    """The running workers: `addresses` of their agents (``unix://``, in host order)."""

    def __init__(self, addresses: list[str], workers: list[Process]) -> None:
        self.addresses = addresses
        self._workers = workers
        self._lines = [BufferedByteReceiveStream(w.stdout) for w in workers if w.stdout is not None]

    async def starts(self) -> tuple[dict[str, tuple[float, float, float]], float]:
        """Every sandbox's (engine wait, latency, slept) so far, and the workers' CPU seconds."""
        starts: dict[str, tuple[float, float, float]] = {}
        cpu = 0.0
        for worker, lines in zip(self._workers, self._lines, strict=True):
            assert worker.stdin is not None
            await worker.stdin.send(b"starts\n")
            reply = json.loads(await lines.receive_until(b"\n", 1 << 28))
            starts.update((k, (v[0], v[1], v[2])) for k, v in reply["starts"].items())
            cpu += reply["cpu"]
        return starts, cpu


@asynccontextmanager
async def open_fake_hosts(
    hosts: int, workers: int, agent: dict[str, Any]
) -> AsyncIterator[FakeHosts]:
    """Start `workers` processes serving `hosts` fake agents between them (`agent`: their
    settings, see `serve`); on exit, end them."""
    with tempfile.TemporaryDirectory(prefix="rock-fakes-") as directory:
        processes: list[Process] = []
        try:
            for worker in range(workers):
                first, last = hosts * worker // workers, hosts * (worker + 1) // workers
                config = {**agent, "directory": directory, "first": first, "count": last - first}
                processes.append(
                    await anyio.open_process(
                        [sys.executable, __file__, json.dumps(config)],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=None,
                    )
                )
            fake = FakeHosts([f"unix://{directory}/fake-{i}.sock" for i in range(hosts)], processes)
            for lines in fake._lines:
                ready = await lines.receive_until(b"\n", 1 << 16)
                assert ready == b"ready", ready
            yield fake
        finally:
            with anyio.CancelScope(shield=True):
                for process in processes:
                    if process.stdin is not None:
                        await process.stdin.aclose()
                for process in processes:
                    with anyio.move_on_after(10):
                        await process.wait()
                    if process.returncode is None:
                        process.kill()
                        await process.wait()


def main() -> int:
    """Read the config from argv[1] and serve."""
    anyio.run(serve, json.loads(sys.argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
