"""Benchmark: several trainers, one fleet (a benchmark, not a test). Needs root, Docker, sshd.

Three namespace hosts (own address, sshd and socket agent each; one Docker engine under all)
whose agents enforce a start cap and a sandbox limit for every program that uses them. In the
same run, alternating, for `--rounds` rounds:

- three trainer processes, each embedding its own core, each making `--creates` sandboxes at
  once over the three hosts (each holds its sandbox `--hold` seconds, then deletes it);
- one trainer process making the same total alone.

It prints, per run: the most containers any host held at once (counted from the engine's own
list every 30 ms) against the limit, the agents' own peaks of starts in flight and of sandboxes
against their caps, the creates refused as full, and the throughput (creates per second from
the first trainer's first create to the last one's end) of three trainers over one, with the
load average before and after. Three trainers gain nothing over one here: the hosts are the
limit, and the point is that sharing them costs little and never overruns them.

Run: ``python bench/bench_shared_admission.py [--quick]``. Everything it makes is removed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import anyio
from _stats import median, print_table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.cluster._netns import NetnsCluster, open_netns_hosts
from tests.cluster._shared_fleet import (
    HeldCounter,
    agent_counts,
    run_trainers,
    start_agents,
    stop_agents,
)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def one_run(
    netns: NetnsCluster, trainers: int, creates: int, hold: float, before: dict[str, Any]
) -> dict[str, Any]:
    with HeldCounter(list(netns)) as held:
        reports = run_trainers(netns, trainers, creates, hold=hold, queue_timeout=None)
    counts = anyio.run(agent_counts, netns)
    span = max(r["end"] for r in reports) - min(r["start"] for r in reports)
    refused = sum(v for c in counts.values() for k, v in c.items() if "refusals_total" in k)
    return {
        "trainers": trainers,
        "creates": sum(r["ok"] for r in reports),
        "failed": sum(r["timed_out"] + len(r["errors"]) for r in reports),
        "span": span,
        "rate": sum(r["ok"] for r in reports) / span,
        "held_most": max(held.most.values()),
        "starts_peak": max(c["rock_admission_starts_peak"] for c in counts.values()),
        "sandboxes_peak": max(c["rock_admission_sandboxes_peak"] for c in counts.values()),
        "refused": refused - before.get("refused", 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer creates and rounds")
    parser.add_argument("--creates", type=int, default=16, help="creates per trainer")
    parser.add_argument("--hold", type=float, default=0.5, help="seconds each sandbox is held")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-starts", type=int, default=2)
    parser.add_argument("--max-sandboxes", type=int, default=3)
    args = parser.parse_args()
    if args.quick:
        args.creates, args.rounds = 6, 1
    print(f"load average before: {load()}  (cpus: {os.cpu_count()})")
    rows = []
    with open_netns_hosts(3) as netns:
        procs = start_agents(netns, max_starts=args.max_starts, max_sandboxes=args.max_sandboxes)
        try:
            refused = 0.0
            for _ in range(args.rounds):
                for trainers in (3, 1):
                    creates = args.creates if trainers == 3 else 3 * args.creates
                    run = one_run(netns, trainers, creates, args.hold, {"refused": refused})
                    refused += run["refused"]
                    run["load"] = load()
                    rows.append(run)
        finally:
            stop_agents(procs)
    print_table(
        f"3 hosts, each --max-starts {args.max_starts} --max-sandboxes {args.max_sandboxes};"
        f" {3 * args.creates} creates per run, each held {args.hold:g} s",
        [
            "trainers",
            "created",
            "failed",
            "seconds",
            "creates/s",
            "most held (engine) / cap",
            "agent peaks: starts, sandboxes",
            "refused as full",
            "load avg",
        ],
        [
            [
                r["trainers"],
                r["creates"],
                r["failed"],
                f"{r['span']:.2f}",
                f"{r['rate']:.2f}",
                f"{r['held_most']} / {args.max_sandboxes}",
                f"{r['starts_peak']:g}, {r['sandboxes_peak']:g}",
                f"{r['refused']:g}",
                r["load"],
            ]
            for r in rows
        ],
    )
    three = median([r["rate"] for r in rows if r["trainers"] == 3])
    one = median([r["rate"] for r in rows if r["trainers"] == 1])
    over = max(r["held_most"] for r in rows) > args.max_sandboxes or any(
        r["starts_peak"] > args.max_starts for r in rows
    )
    print(
        f"median throughput, 3 trainers / 1 trainer: {three:.2f} / {one:.2f} creates/s ="
        f" {three / one:.2f}x; any host over its cap: {'YES' if over else 'no'}"
    )
    print(f"load average after: {load()}")


if __name__ == "__main__":
    main()
