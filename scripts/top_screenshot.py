"""Make docs/img/rock-top.svg: a screenshot of `rock top` from a real run.

A program (owner "trainer-1") starts three sandboxes on this host's engine, one with an idle
timeout, and a warm pool of two that it draws from three times (two hits, one miss); the live
view of that program's own cluster is then drawn by Textual off-screen and saved as SVG.
Everything it made is removed when it ends.

    PYTHONPATH=src python3 scripts/top_screenshot.py [OUT.svg]
"""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
from msgspec.structs import replace

from rock_sdk import SandboxConfig, open_cluster
from rock_sdk._top import top_app

OUT = Path(__file__).resolve().parents[1] / "docs" / "img" / "rock-top.svg"
IMAGE = "python:3.11"


async def main(out: Path) -> None:
    config = SandboxConfig(image=IMAGE, memory="256m", cpus=0.25)
    async with open_cluster(["local"], owner="trainer-1") as cluster:
        for timeout in (None, 600.0, None):
            sandbox = await cluster.create_sandbox(replace(config, idle_timeout=timeout))
            await sandbox.arun("python3 -c 'x = bytearray(20 << 20); print(len(x))'")
        async with cluster.open_pool(config, min_size=2, max_size=3, name="swe") as pool:
            await pool.wait_ready()
            taken = [await pool.acquire() for _ in range(3)]
            busy = taken[0]
            await busy.arun("(while :; do :; done) >/dev/null 2>&1 &")  # some cpu to show
            app = top_app(cluster, interval=60)
            async with app.run_test(size=(150, 34)) as pilot:
                with anyio.fail_after(30):
                    while not any(p.hits for p in app.snapshot.pools):
                        await anyio.sleep(0.5)  # the core reports its pool within a second
                        await app.action_refresh_view()
                await pilot.pause()
                out.parent.mkdir(parents=True, exist_ok=True)
                app.save_screenshot(filename=out.name, path=str(out.parent))
    print(f"wrote {out}")


if __name__ == "__main__":
    anyio.run(main, Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
