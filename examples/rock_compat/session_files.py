"""Move around a session, upload a file, overwrite it, read it back two ways, check with cat.

Exercises the ROCK API the way ROCK's examples/sandbox_files_demo.py does (`upload`,
`write_file`, `read_file`, `read_file_by_line_range`), with only `rock_sdk.compat.rock`
imports.

    python examples/rock_compat/session_files.py
"""

import asyncio
import os
import tempfile

from rock_sdk.compat.rock import (
    CreateBashSessionRequest,
    ReadFileRequest,
    Sandbox,
    SandboxConfig,
    UploadRequest,
    WriteFileRequest,
)


async def main() -> None:
    sandbox = Sandbox(SandboxConfig(image="python:3.11", startup_timeout=60))
    await sandbox.start()
    try:
        await sandbox.create_session(CreateBashSessionRequest(session="work"))
        await sandbox.arun(cmd="mkdir -p /srv/notes && cd /srv/notes", session="work")
        here = (await sandbox.arun(cmd="pwd", session="work")).output.strip()

        with tempfile.NamedTemporaryFile("w", suffix=".md", delete=False) as local:
            local.write("draft\n")
        try:
            target = f"{here}/notes.md"
            uploaded = await sandbox.upload(
                UploadRequest(source_path=local.name, target_path=target)
            )
            assert uploaded.success, uploaded.message
        finally:
            os.unlink(local.name)
        listing = await sandbox.arun(cmd="ls notes.md", session="work")
        assert listing.output.strip() == "notes.md", listing.output

        written = await sandbox.write_file(
            WriteFileRequest(content="first line\nsecond line\nthird line\n", path=target)
        )
        assert written.success, written.message

        whole = (await sandbox.read_file(ReadFileRequest(path=target))).content
        middle = (await sandbox.read_file_by_line_range(target, start_line=2, end_line=2)).content
        cat = (await sandbox.arun(cmd="cat notes.md", session="work")).output
        assert whole.splitlines()[1] == middle.strip() == "second line", (whole, middle)
        assert cat == whole.strip(), (cat, whole)
        print(f"read {len(whole.splitlines())} lines from {target}; line 2 is {middle.strip()!r}")
    finally:
        await sandbox.stop()


if __name__ == "__main__":
    asyncio.run(main())
