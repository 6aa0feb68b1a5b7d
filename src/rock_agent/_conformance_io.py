"""The conformance checks of what runs and moves inside a sandbox: processes, files, images
and image builds.

Rules (those of `_conformance` too):
- Each check is a plain async function ``check(runtime, image)`` on a sandbox of its own.
- Connections are checked from inside a sandbox only (`connect` and `listen` meet in its
  network), so no check needs the sandbox to have a network.
- Errors are checked by type and by the sandbox, path or image they name, never by the
  engine's own wording.
"""

from __future__ import annotations

import contextlib
import secrets

import anyio

from rock_core import AlreadyExists, BadRequest, FileNotFound, ImageNotFound, NotFound

from ._conformance_kit import (
    STEP_TIMEOUT,
    check,
    chunks,
    collect,
    make_tar,
    read_tar,
    run,
    sandbox,
)
from ._runtime import ContainerRuntime


async def check_exec_output_and_exit_codes(runtime: ContainerRuntime, image: str) -> None:
    """Stdout and stderr apart, byte-exact; the exit code; env and cwd are the given ones."""
    async with sandbox(runtime, image, "exec") as sandbox_id:
        script = 'printf "out\\0"; printf "err" >&2; printf "$A@"; printf here > here; exit 3'
        process = await runtime.exec(
            sandbox_id, ["/bin/sh", "-c", script], env={"A": "v"}, cwd="/tmp", stdin=False
        )
        try:
            out, err = await collect(process)
            check((out, err) == (b"out\0v@", b"err"), f"output {(out, err)!r}")
            code = await process.wait()
            check(code == 3, f"exit code {code!r}, not 3")
            state = await process.state()
            check((state.exit_code, state.running) == (3, False), f"ended process: {state!r}")
        finally:
            await process.aclose()
        found = await read_tar(runtime, sandbox_id, "/tmp/here")
        check(found == {"here": b"here"}, f"/tmp/here holds {found!r}")
        ran = await run(runtime, sandbox_id, "exit 0")
        check(ran == (b"", 0), f"`exit 0` gave {ran!r}")
        ran = await run(runtime, sandbox_id, "kill -9 $$")
        check(ran == (b"", 137), f"a shell killed by SIGKILL gave {ran!r}, not exit code 137")


async def check_exec_refusals(runtime: ContainerRuntime, image: str) -> None:
    """A missing program or working folder is `FileNotFound` from the process handle."""
    async with sandbox(runtime, image, "refuse") as sandbox_id:
        for argv, cwd, named in (
            (["rock-no-such-program"], "", "rock-no-such-program"),
            (["/bin/sh", "-c", "true"], "/rock/no/such/folder", "/rock/no/such/folder"),
        ):
            process = await runtime.exec(sandbox_id, argv, cwd=cwd)
            try:
                await collect(process)
            except FileNotFound as exc:
                check(named in str(exc) and sandbox_id in str(exc), exc)
            else:
                raise AssertionError(f"{argv} in {cwd or 'the default folder'} did run")
            finally:
                await process.aclose()


async def check_stdin_eof(runtime: ContainerRuntime, image: str) -> None:
    """What is written reaches the process; closing the input is its end-of-file."""
    async with sandbox(runtime, image, "stdin") as sandbox_id:
        process = await runtime.exec(sandbox_id, ["cat"])
        try:
            await process.write(b"hello ")
            await process.write(b"world")
            await process.close_input()
            output = await collect(process)
            check(output == (b"hello world", b""), f"cat gave {output!r}")
            code = await process.wait()
            check(code == 0, f"cat exited {code!r} at end-of-file")
        finally:
            await process.aclose()


async def check_archive_round_trip(runtime: ContainerRuntime, image: str) -> None:
    """A tar stream in comes back out (a folder with its content, one file alone); a missing
    path or folder is `FileNotFound`."""
    async with sandbox(runtime, image, "tar") as sandbox_id:
        blob = bytes(range(256)) * 300
        archive = make_tar({"box/a.txt": b"alpha\n", "box/sub/b.bin": blob}, folders=("box",))
        await runtime.put_archive(sandbox_id, "/tmp", chunks(archive))
        got = await read_tar(runtime, sandbox_id, "/tmp/box")
        expected = {
            "box": b"<folder>",
            "box/a.txt": b"alpha\n",
            "box/sub": b"<folder>",
            "box/sub/b.bin": blob,
        }
        check(got == expected, f"/tmp/box came back as {sorted(got)}")
        one = await read_tar(runtime, sandbox_id, "/tmp/box/a.txt")
        check(one == {"a.txt": b"alpha\n"}, f"/tmp/box/a.txt came back as {one!r}")
        ran = await run(runtime, sandbox_id, "cat box/a.txt", cwd="/tmp")
        check(ran == (b"alpha\n", 0), f"cat of the unpacked file gave {ran!r}")
        for attempt in (
            read_tar(runtime, sandbox_id, "/tmp/rock-missing"),
            runtime.put_archive(sandbox_id, "/rock/missing", chunks(archive)),
        ):
            try:
                await attempt
            except FileNotFound as exc:
                check("missing" in str(exc), exc)
            else:
                raise AssertionError("a missing path was read or written")


async def check_images(runtime: ContainerRuntime, image: str) -> None:
    """A present image is found and needs no pull; a missing one is `ImageNotFound`; an
    unknown pull policy is `BadRequest`."""
    await runtime.ensure_image(image, "never")
    record = await runtime.inspect_image(image)
    check(record.image_id and image in [*record.tags, record.image_id], record)
    local = await runtime.local_images()
    check(image in local or ":" not in image, f"{image} is not among the local images {local}")
    missing = f"rock-conformance/missing:{secrets.token_hex(4)}"
    for attempt in (runtime.inspect_image(missing), runtime.ensure_image(missing, "never")):
        try:
            await attempt
        except ImageNotFound as exc:
            check(missing in str(exc), exc)
        else:
            raise AssertionError(f"missing image {missing} was found")
    try:
        await runtime.ensure_image(image, "sometimes")  # type: ignore[arg-type]
    except BadRequest as exc:
        check("sometimes" in str(exc), exc)
    else:
        raise AssertionError("an unknown pull policy was accepted")


async def check_build(runtime: ContainerRuntime, image: str) -> None:
    """A build from `image` copies a context file and runs a step; its image carries the
    labels given and starts sandboxes with those files. A failing step is `BadRequest` naming
    that step (its output kept); a missing base image is `ImageNotFound`; neither leaves an
    image. Every image it builds is removed."""
    tag = f"rock-conformance/build-{secrets.token_hex(4)}:1"
    dockerfile = b"FROM " + image.encode() + b"\nWORKDIR /built\nCOPY in.txt in.txt\n"
    context = make_tar({"Dockerfile": dockerfile + b"RUN cp in.txt ran.txt\n", "in.txt": b"in"})
    labels = {"rock-conformance": "1"}
    try:
        outcome = await runtime.build_image(
            chunks(context), tag=tag, dockerfile="Dockerfile", labels=labels
        )
        record = await runtime.inspect_image(tag)
        check(record.image_id == outcome.image_id, f"{tag} is {record}, built {outcome}")
        check(record.labels.get("rock-conformance") == "1", f"labels {record.labels}")
        async with sandbox(runtime, tag, "built") as sandbox_id:
            found = await read_tar(runtime, sandbox_id, "/built")
            check(found.get("built/ran.txt") == b"in", f"the built image holds {found}")
        for name, text, error in (
            ("fails", dockerfile + b"RUN echo conformance-failed && exit 3\n", BadRequest),
            (
                "orphan",
                b"FROM rock-conformance/absent:" + secrets.token_hex(4).encode(),
                ImageNotFound,
            ),
        ):
            failed = tag.replace(":1", f"-{name}:1")
            archive = make_tar({"Dockerfile": text, "in.txt": b"in"})
            try:
                await runtime.build_image(
                    chunks(archive), tag=failed, dockerfile="Dockerfile", labels={}
                )
            except error as exc:
                check(failed in str(exc) and exc.details.get("image") == failed, exc)
                if name == "fails":
                    check("RUN echo conformance-failed" in exc.details.get("step", ""), exc.details)
                    check("conformance-failed" in exc.details.get("output", ""), exc.details)
            else:
                raise AssertionError(f"the build of {failed} did not fail")
            try:
                await runtime.inspect_image(failed)
            except ImageNotFound:
                pass
            else:
                raise AssertionError(f"the failed build left image {failed}")
    finally:
        with anyio.CancelScope(shield=True), contextlib.suppress(ImageNotFound):
            await runtime.remove_image(tag)


async def check_listen(runtime: ContainerRuntime, image: str) -> None:
    """A listener inside a sandbox accepts a connection made inside, carried both ways; its
    port, taken, is `AlreadyExists`; closed, nothing listens there any more."""
    async with sandbox(runtime, image, "listen") as sandbox_id:
        listener = await runtime.listen(sandbox_id, "127.0.0.1", 0)
        port = listener.port
        try:
            check(1 <= port <= 65535, f"listening on port {port}")
            with anyio.fail_after(STEP_TIMEOUT):
                inside = await runtime.connect(sandbox_id, "127.0.0.1", port)
                async with inside, await listener.accept() as accepted:
                    await inside.send(b"ping")
                    check(await accepted.receive() == b"ping", "the listener got other bytes")
                    await accepted.send(b"pong")
                    check(await inside.receive() == b"pong", "the connection got other bytes")
            try:
                await (await runtime.listen(sandbox_id, "127.0.0.1", port)).aclose()
            except AlreadyExists as exc:
                check(sandbox_id in str(exc) and str(port) in str(exc), exc)
            else:
                raise AssertionError(f"a second listen on port {port} did not fail")
        finally:
            await listener.aclose()
        try:
            await (await runtime.connect(sandbox_id, "127.0.0.1", port)).aclose()
        except NotFound as exc:
            check(sandbox_id in str(exc), exc)
        else:
            raise AssertionError(f"port {port} still accepts connections after aclose")


__all__ = [
    "check_archive_round_trip",
    "check_build",
    "check_exec_output_and_exit_codes",
    "check_exec_refusals",
    "check_images",
    "check_listen",
    "check_stdin_eof",
]
