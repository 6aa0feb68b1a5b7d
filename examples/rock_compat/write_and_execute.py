"""Write a file, build an archive with a one-off command, and handle a missing file.

Exercises the ROCK API the way ROCK's examples/download_file_demo.py does (`write_file` of
non-ASCII text, `execute(Command(command=["bash", "-c", ...]))` with `exit_code`, `stdout`
and `stderr`, an error case checked in the script), with only `rock_sdk.compat.rock` imports.
ROCK's demo then downloads over OSS; here the archive is listed inside the sandbox instead.

    python examples/rock_compat/write_and_execute.py
"""

import asyncio

from rock_sdk.compat.rock import (
    Command,
    ReadFileRequest,
    Sandbox,
    SandboxConfig,
    WriteFileRequest,
)

BUILD = """
mkdir -p /tmp/bundle/sub
cp /tmp/greeting.txt /tmp/bundle/
echo nested > /tmp/bundle/sub/nested.txt
cd /tmp && tar czf bundle.tar.gz bundle
ls -l /tmp/bundle.tar.gz
"""


async def main() -> None:
    sandbox = Sandbox(SandboxConfig())
    await sandbox.start()
    try:
        text = "Grüße aus der Sandbox ✓\nline 2\n"
        written = await sandbox.write_file(WriteFileRequest(path="/tmp/greeting.txt", content=text))
        if not written.success:
            raise SystemExit(f"write failed: {written.message}")
        back = await sandbox.read_file(ReadFileRequest(path="/tmp/greeting.txt"))
        assert back.content == text, back.content

        built = await sandbox.execute(Command(command=["bash", "-c", BUILD]))
        if built.exit_code != 0:
            raise SystemExit(f"archive failed: {built.stderr}")
        listed = await sandbox.execute(Command(command=["tar", "tzf", "/tmp/bundle.tar.gz"]))
        names = sorted(listed.stdout.split())
        print(f"archive holds {names}")

        missing = await sandbox.execute(Command(command="cat /tmp/no-such-file.txt"))
        assert missing.exit_code != 0 and "No such file" in missing.stderr, missing
        try:
            await sandbox.read_file(ReadFileRequest(path="/tmp/no-such-file.txt"))
        except FileNotFoundError as exc:
            print(f"missing file reported: {exc}")
        else:
            raise SystemExit("reading a missing file should fail")
    finally:
        await sandbox.stop()


if __name__ == "__main__":
    asyncio.run(main())
