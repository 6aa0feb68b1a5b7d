"""Evaluate a small task end to end: fix the code, upload its tests, run them in the background.

Exercises the ROCK API the way ROCK's examples/evaluation/swe_bench/swe_bench_verified_demo.py
does: a session with environment variables for the tests, test files uploaded with
`upload_by_path`, the test run started with ``arun(..., mode=RunMode.NOHUP, wait_timeout=...)``
and its output parsed for the verdict. The "agent" step is a fixed patch written with
`write_file`. Only `rock_sdk.compat.rock` imports.

    python examples/rock_compat/evaluate_task.py
"""

import asyncio
import tempfile
from pathlib import Path

from rock_sdk.compat.rock import (
    CreateBashSessionRequest,
    RunMode,
    Sandbox,
    SandboxConfig,
    WriteFileRequest,
)

BUGGY = "def add(a, b):\n    return a - b\n"
FIXED = "def add(a, b):\n    return a + b\n"
TESTS = """import os, sys
sys.path.insert(0, "/work")
from calc import add
checks = {"small": add(2, 3) == 5, "negative": add(-1, -1) == -2}
for name, ok in checks.items():
    print(("PASSED" if ok else "FAILED"), name, os.environ["RUN_LABEL"])
"""
RUN_TESTS = "#!/bin/bash\ncd /tests && python3 -B test_calc.py\n"


def resolved(output: str) -> bool:
    lines = [line for line in output.splitlines() if line.startswith(("PASSED", "FAILED"))]
    return bool(lines) and all(line.startswith("PASSED") for line in lines)


async def evaluate(sandbox: Sandbox, patch: str, label: str) -> bool:
    await sandbox.write_file(WriteFileRequest(path="/work/calc.py", content=patch))
    session = f"eval-{label}"
    await sandbox.create_session(
        CreateBashSessionRequest(session=session, env_enable=True, env={"RUN_LABEL": session})
    )
    with tempfile.TemporaryDirectory() as tests:
        for name, text in (("test_calc.py", TESTS), ("run-tests.sh", RUN_TESTS)):
            (Path(tests) / name).write_text(text)
            uploaded = await sandbox.upload_by_path(Path(tests) / name, f"/tests/{name}")
            assert uploaded.success, uploaded.message
    result = await sandbox.arun(
        "bash /tests/run-tests.sh", session=session, mode=RunMode.NOHUP, wait_timeout=120
    )
    assert result.exit_code == 0, result.failure_reason
    print(result.output)
    return resolved(result.output)


async def main() -> None:
    sandbox = Sandbox(SandboxConfig(image="python:3.11"))
    await sandbox.start()
    try:
        before = await evaluate(sandbox, BUGGY, "before")
        after = await evaluate(sandbox, FIXED, "after")
        print(f"resolved before the fix: {before}; after: {after}")
        assert (before, after) == (False, True)
    finally:
        await sandbox.stop()


if __name__ == "__main__":
    asyncio.run(main())
