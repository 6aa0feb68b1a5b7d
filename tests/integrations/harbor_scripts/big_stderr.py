"""An exec whose stderr is larger than `Sandbox.read_file` returns: printed as JSON.

Run by test_harbor.py with the Harbor venv's python: WORK_DIR PY_IMAGE.
"""

import asyncio
import json
import sys
from pathlib import Path

from _env import environment  # beside this script

work = Path(sys.argv[1])


async def main() -> None:
    env = environment(work, "big", sys.argv[2])
    await env.start(force_build=False)
    try:
        result = await env.exec("head -c 17000000 /dev/zero | tr '\\0' e >&2; echo done; exit 4")
        after = await env.exec("echo next")
    finally:
        await env.stop(delete=True)
    out: dict[str, object] = {
        "stdout": result.stdout,
        "code": result.return_code,
        "stderr_start": result.stderr[:3],
        "stderr_large": len(result.stderr) > 10_000_000,
        "next": after.stdout,
    }
    print(json.dumps(out))


asyncio.run(main())
