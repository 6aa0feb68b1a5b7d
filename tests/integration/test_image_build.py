"""Image builds through the agent, for real: a local build context streamed to the host's
agent, built by its Docker engine with no registry, then used by a sandbox.

Every image this module builds has a unique name and is removed at the end.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest

from rock_core import BadRequest, ImageNotFound
from rock_sdk import SandboxCluster, SandboxConfig

from ..conftest import PY_IMAGE, SH_IMAGE

pytestmark = [pytest.mark.anyio, pytest.mark.docker, pytest.mark.slow]

PREFIX = f"rock-build-{secrets.token_hex(4)}"


@pytest.fixture(scope="module")
def built() -> Iterator[list[str]]:
    """Tags this module builds; every one is removed at the end."""
    tags: list[str] = []
    yield tags
    if tags:
        subprocess.run(["docker", "rmi", "-f", *tags], capture_output=True)


def new_tag(built: list[str], name: str) -> str:
    tag = f"{PREFIX}/{name}:1"
    built.append(tag)
    return tag


def context(folder: Path, dockerfile: str, files: dict[str, str] | None = None) -> Path:
    """A build context: `dockerfile` as its Dockerfile, and `files` beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Dockerfile").write_text(dockerfile)
    for name, text in (files or {}).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


@pytest.mark.parametrize(("base", "shell"), [(PY_IMAGE, "bash"), (SH_IMAGE, "sh")])
async def test_a_built_image_has_the_copied_file_and_the_run_step(
    sdk: SandboxCluster, built: list[str], tmp_path: Path, base: str, shell: str
) -> None:
    folder = context(
        tmp_path / "ctx",
        f"FROM {base}\nCOPY app/hello.txt /opt/app/hello.txt\nRUN echo built > /opt/app/step.txt\n",
        {"app/hello.txt": "hello from the context\n"},
    )
    tag = new_tag(built, f"copy-run-{shell}")
    images = await sdk.build_image(folder, tag)
    (host_id,) = images
    assert images[host_id].tags == [tag]
    assert images[host_id].image_id.startswith("sha256:")
    listed = (await sdk.list_images())[host_id].images
    assert tag in [t for info in listed for t in info.tags]
    sandbox = await sdk.create_sandbox(SandboxConfig(image=tag, memory="256m", cpus=1))
    try:
        assert await sandbox.read_file("/opt/app/hello.txt") == b"hello from the context\n"
        assert await sandbox.read_file("/opt/app/step.txt") == b"built\n"
    finally:
        await sandbox.delete()


def containers_running(text: str) -> list[str]:
    """Every container of the engine (any state) whose command holds `text`."""
    out = subprocess.run(
        ["docker", "ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Command}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line for line in out.splitlines() if text in line]


async def test_a_failing_step_is_named_with_its_last_output_lines(
    sdk: SandboxCluster, built: list[str], tmp_path: Path
) -> None:
    marker = f"{PREFIX}-about-to-fail"
    folder = context(tmp_path / "ctx", f"FROM {SH_IMAGE}\nRUN echo {marker} && exit 3\n")
    tag = new_tag(built, "fails")
    with pytest.raises(BadRequest) as caught:
        await sdk.build_image(folder, tag)
    (host_id,) = sdk.hosts
    error = caught.value
    step = error.details["step"]
    assert re.fullmatch(rf"Step 2/\d+ : RUN echo {marker} && exit 3", step)
    assert str(error).startswith(f"host {host_id}: building {tag}: {step} failed: ")
    assert "returned a non-zero code: 3" in str(error)
    assert "\nlast output lines:\n" in str(error)
    assert f"\n  {marker}\n" in str(error)
    assert marker in error.details["output"].splitlines()
    assert containers_running(marker) == []  # the build's container did not stay
    assert await sdk.warm_image(SH_IMAGE)  # the link and the agent are still up


async def test_an_absent_base_image_is_image_not_found(
    sdk: SandboxCluster, built: list[str], tmp_path: Path
) -> None:
    absent = f"{PREFIX}/absent:1"
    folder = context(tmp_path / "ctx", f"FROM {absent}\n")
    with pytest.raises(ImageNotFound) as caught:
        await sdk.build_image(folder, new_tag(built, "orphan"))
    assert f"base image {absent} is not on this host and could not be pulled" in str(caught.value)
    assert re.fullmatch(rf"Step 1/\d+ : FROM {absent}", caught.value.details["step"])


async def eventually(condition: Callable[[], bool], timeout: float = 60) -> None:
    """Wait until `condition()` holds (the engine acts on its own time); `TimeoutError`."""
    with anyio.fail_after(timeout):
        for _ in iter(int, 1):
            if condition():
                return
            await anyio.sleep(0.2)


async def test_a_cancelled_build_leaves_no_container_and_the_link_goes_on(
    sdk: SandboxCluster, built: list[str], tmp_path: Path
) -> None:
    marker = f"{PREFIX}-cancelled"
    folder = context(tmp_path / "ctx", f"FROM {SH_IMAGE}\nRUN echo {marker} && sleep 120\n")
    async with anyio.create_task_group() as tg:
        tg.start_soon(sdk.build_image, folder, new_tag(built, "cancelled"))
        await eventually(lambda: bool(containers_running(marker)))  # the RUN step runs
        tg.cancel_scope.cancel()
    await eventually(lambda: not containers_running(marker))
    assert await sdk.warm_image(SH_IMAGE)


async def test_a_dockerfile_elsewhere_in_the_context_and_engine_refusals(
    sdk: SandboxCluster, built: list[str], tmp_path: Path
) -> None:
    folder = context(tmp_path / "ctx", "FROM nothing-here\n", {"a.txt": "a\n"})
    (folder / "docker").mkdir()
    (folder / "docker" / "Build.file").write_text(f"FROM {SH_IMAGE}\nCOPY a.txt /a.txt\n")
    tag = new_tag(built, "elsewhere")
    (info,) = (await sdk.build_image(folder, tag, dockerfile="docker/Build.file")).values()
    assert info.tags == [tag]
    (host_id,) = sdk.hosts
    (folder / "Dockerfile").write_text(f"FROM {SH_IMAGE}\nFOOBAR x\n")
    with pytest.raises(BadRequest) as caught:
        await sdk.build_image(folder, new_tag(built, "unparsed"))
    assert str(caught.value) == (
        f"host {host_id}: building image {PREFIX}/unparsed:1: dockerfile parse error line 2:"
        " unknown instruction: FOOBAR"
    )
    with pytest.raises(BadRequest) as caught:
        await sdk.build_image(folder, "Not/Valid:1")
    assert str(caught.value) == (
        f"host {host_id}: 'Not/Valid:1' is not a valid image name: use lowercase letters, digits"
        " and . _ - / in the name, and an optional :tag, e.g. 'me/saved:1'"
    )


DOC = Path(__file__).parents[2] / "docs" / "using-sandboxes.md"


def test_the_docs_snippet_runs_as_shown() -> None:
    section = DOC.read_text().split("## Building images", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
        )
    finally:
        subprocess.run(["docker", "rmi", "me/task:1"], capture_output=True)
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()[:2]
    assert re.fullmatch(r"\{'[^']+': \['me/task:1'\]\}", first)
    assert second == "42"
