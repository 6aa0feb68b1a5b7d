"""An exec cancelled by its caller ends its command in the sandbox: printed as JSON.

Run by test_harbor.py with the Harbor venv's python: WORK_DIR PY_IMAGE.
"""

import asyncio
import json
import sys
from pathlib import Path

from _env import environment  # beside this script

work = Path(sys.argv[1])


async def main() -> None:
    env = environment(work, "cancel", sys.argv[2])
    await env.start(force_build=False)
    try:
        # The loop writes five ticks a second into /tmp/ticks while it runs.
        loop = "while true; do echo tick >> /tmp/ticks; sleep 0.2; done"
        timed_out = False
        try:
            await asyncio.wait_for(env.exec(loop), timeout=2)
        except TimeoutError:
            timed_out = True
        first = await env.exec("wc -l < /tmp/ticks")
        await asyncio.sleep(1.5)
        second = await env.exec("wc -l < /tmp/ticks")
    finally:
        await env.stop(delete=True)
    out = {
        "timed_out": timed_out,
        "ticked": int(first.stdout) > 0,
        "still_ticking": int(second.stdout) > int(first.stdout),
    }
    print(json.dumps(out))


asyncio.run(main())
