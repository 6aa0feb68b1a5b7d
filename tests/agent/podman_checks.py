"""Run checks of the runtime conformance suite on Podman, as the user this process runs as
(test_podman_runtime.py runs it as the Podman user; it never imports this).

    python podman_checks.py URL IMAGE NAME...   the checks on the Podman service at URL
    (with ``--own-service``, the runtime starts that service itself and stops it at the end)

One line per check: ``PASS name``, ``SKIP name: why`` (this host cannot do what it checks),
or ``FAIL name: error``; exit code 0 if none failed.
"""

from __future__ import annotations

import os
import secrets
import sys
import traceback

import anyio

from rock_agent._podman import PodmanRuntime
from rock_agent._runtime_choice import open_runtime
from rock_agent.testing import CHECKS

# Checks that need what this host may not give an ordinary user's Podman.
PAUSE_CHECKS = {"pause_and_resume", "pause_refusals"}


async def skip_reason(runtime: PodmanRuntime, name: str) -> str | None:
    """Why this host cannot run check `name`; None if it can."""
    if name in PAUSE_CHECKS:
        return (await runtime.engine.podman_host()).pause_problem()
    if name == "image_archive":
        return "the Podman runtime refuses image archives (docs/podman.md)"
    if name == "network_policy":
        return "the Podman runtime refuses network policies (docs/podman.md)"
    return None


async def main(url: str, image: str, names: list[str]) -> int:
    failed = 0
    for name in names:
        async with open_runtime("podman", url, f"podman-{secrets.token_hex(4)}") as runtime:
            assert isinstance(runtime, PodmanRuntime)
            try:
                reason = await skip_reason(runtime, name)
                if reason is not None:
                    print(f"SKIP {name}: {reason}", flush=True)
                    continue
                with anyio.fail_after(180):
                    await CHECKS[name](runtime, image)
            except BaseException as exc:  # reported, one line per check
                failed += 1
                print(f"FAIL {name}: {type(exc).__name__}: {exc}", flush=True)
                traceback.print_exc()
            else:
                print(f"PASS {name}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--own-service"]
    if "--own-service" not in sys.argv and not os.path.exists(args[0].removeprefix("unix://")):
        sys.exit(f"no Podman service at {args[0]}")
    sys.exit(anyio.run(main, args[0], args[1], args[2:]))
