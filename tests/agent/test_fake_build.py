"""Image builds through the agent, on `FakeRuntime`: the context streamed under credit, the
tag and Dockerfile checked, the image labelled as a commit is, failures named by step."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from rock_agent._images import LABEL_COMMITTER
from rock_agent.testing import AgentConnector, FakeRuntime
from rock_core._errors import AlreadyExists, BadRequest, FileNotFound, ImageNotFound
from rock_core._fake_agent import FAKE_AGENT_VERSION
from rock_core._protocol import BuildImage, BuildReply, FileReply, Ping, Pong, ReadFile
from rock_core.testing import FakeAgent, FakeAgentConnector
from rock_sdk import open_cluster
from rock_sdk._build import build_on
from rock_sdk._local import walk

from ..conftest import SH_IMAGE
from .test_fake_coverage import OWNER, Fake, anyio_backend, covers, open_fake
from .test_fake_images import make_box

__all__ = ["anyio_backend"]

pytestmark = pytest.mark.anyio


def context(folder: Path, dockerfile: str, files: dict[str, str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Dockerfile").write_text(dockerfile)
    for name, text in (files or {}).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


async def build(fake: Fake, folder: Path, tag: str, dockerfile: str = "Dockerfile") -> BuildReply:
    return await build_on(fake.conn, walk(str(folder), "."), tag, dockerfile)


async def still_answers(fake: Fake) -> None:
    assert (await fake.conn.call(Ping(id=fake.conn.next_id()), Pong)).time > 0


@covers(BuildImage)
async def test_a_build_copies_runs_and_labels_the_image_as_its_builders(tmp_path: Path) -> None:
    folder = context(
        tmp_path / "ctx",
        f"# a comment\nFROM {SH_IMAGE}\nWORKDIR /app\nCOPY data/hello.txt hello.txt\n"
        "RUN cp hello.txt copy.txt && \\\n    echo copied\nLABEL team=rl\n",
        {"data/hello.txt": "hello\n"},
    )
    async with open_fake() as fake:
        reply = await build(fake, folder, "me/app:1")
        assert reply.image.tags == ["me/app:1"]
        assert reply.output[0] == f"Step 1/5 : FROM {SH_IMAGE}"
        assert "copied" in reply.output
        assert reply.output[-1] == "Successfully tagged me/app:1"
        labels = fake.runtime.images.find("me/app:1").labels
        assert labels == {"team": "rl", LABEL_COMMITTER: f"{os.getuid()}:{OWNER}"}
        await make_box(fake, "from-build", "me/app:1")
        read = ReadFile(id=fake.conn.next_id(), sandbox_id="from-build", path="/app/copy.txt")
        assert (await fake.conn.call(read, FileReply)).data == b"hello\n"
        # its builder builds the tag again: the tag moves to the new image
        again = await build(fake, folder, "me/app:1")
        assert again.image.image_id != reply.image.image_id
        assert fake.runtime.images.find(reply.image.image_id).tags == []


@covers(BuildImage)
async def test_a_failing_step_is_named_with_its_last_lines_and_the_agent_goes_on(
    tmp_path: Path,
) -> None:
    folder = context(tmp_path / "ctx", f"FROM {SH_IMAGE}\nRUN echo about-to-fail && exit 3\n")
    async with open_fake() as fake:
        with pytest.raises(BadRequest) as caught:
            await build(fake, folder, "me/fails:1")
        step = "Step 2/2 : RUN echo about-to-fail && exit 3"
        assert str(caught.value) == (
            f"building me/fails:1: {step} failed: The command '/bin/sh -c echo about-to-fail"
            f" && exit 3' returned a non-zero code: 3\nlast output lines:\n"
            f"  Step 1/2 : FROM {SH_IMAGE}\n  {step}\n  about-to-fail"
        )
        assert caught.value.details == {
            "step": step,
            "output": f"Step 1/2 : FROM {SH_IMAGE}\n{step}\nabout-to-fail",
            "image": "me/fails:1",
        }
        with pytest.raises(ImageNotFound, match="^" + re.escape("image me/fails:1: no such image")):
            fake.runtime.images.find("me/fails:1")
        await still_answers(fake)


@covers(BuildImage)
async def test_an_absent_base_image_is_image_not_found(tmp_path: Path) -> None:
    folder = context(tmp_path / "ctx", "FROM rock/absent:1\nRUN true\n")
    async with open_fake() as fake:
        with pytest.raises(ImageNotFound) as caught:
            await build(fake, folder, "me/orphan:1")
        assert str(caught.value).startswith(
            "building me/orphan:1: base image rock/absent:1 is not on this host and could not"
            " be pulled (pull access denied for rock/absent:1: image rock/absent:1: no such"
            " image: rock/absent:1); pull or build it first\nlast output lines:\n"
        )
        assert caught.value.details["step"] == "Step 1/2 : FROM rock/absent:1"
        await still_answers(fake)


@covers(BuildImage)
async def test_bad_tags_and_dockerfiles_are_refused_before_a_build(tmp_path: Path) -> None:
    folder = context(tmp_path / "ctx", f"FROM {SH_IMAGE}\n")
    async with open_fake() as fake:
        with pytest.raises(
            BadRequest, match="^" + re.escape("'Me/App:1' is not a valid image name: use lower")
        ):
            await build(fake, folder, "Me/App:1")
        with pytest.raises(
            BadRequest, match="^" + re.escape("build to a name:tag, not a digest: 'me/a@sha")
        ):
            await build(fake, folder, "me/a@sha256:00")
        with pytest.raises(
            BadRequest,
            match=r"^invalid 'image_build' request: tag 'me app:1': must be an image reference",
        ):
            await build(fake, folder, "me app:1")
        for outside in ("../Dockerfile", "/Dockerfile", "."):
            with pytest.raises(BadRequest, match=f"^dockerfile '{outside}' must be a file's path"):
                await build(fake, folder, "me/app:1", outside)
        with pytest.raises(
            BadRequest, match="^" + re.escape("building me/app:1: the build context has no file")
        ):
            await build(fake, folder, "me/app:1", "docker/Dockerfile")
        with pytest.raises(AlreadyExists, match=rf"^image {SH_IMAGE} already exists \(made by no"):
            await build(fake, folder, SH_IMAGE)
        await still_answers(fake)


@covers(BuildImage)
async def test_another_users_build_is_not_replaced(tmp_path: Path) -> None:
    folder = context(tmp_path / "ctx", f"FROM {SH_IMAGE}\n")
    runtime = FakeRuntime(images=[SH_IMAGE])
    runtime.images.add("them/app:1", labels={LABEL_COMMITTER: "4242:them"})
    async with open_fake(runtime=runtime) as fake:
        with pytest.raises(AlreadyExists) as caught:
            await build(fake, folder, "them/app:1")
        assert str(caught.value) == (
            "image them/app:1 already exists (made by user 4242): a build replaces only an image"
            " its own user committed; build to another name"
        )


@covers(BuildImage)
async def test_the_sdk_builds_on_every_connected_host_or_the_ones_named(tmp_path: Path) -> None:
    folder = context(tmp_path / "ctx", f"FROM {SH_IMAGE}\nCOPY a.txt /a.txt\n", {"a.txt": "a"})
    async with (
        open_fake(runtime=FakeRuntime(host_id="h1", images=[SH_IMAGE])) as one,
        open_fake(runtime=FakeRuntime(host_id="h2", images=[SH_IMAGE])) as two,
        open_cluster([AgentConnector(one.server), AgentConnector(two.server)]) as cluster,
    ):
        images = await cluster.build_image(folder, "me/app:1")
        assert sorted(images) == ["h1", "h2"]
        assert all(info.tags == ["me/app:1"] for info in images.values())
        only = await cluster.build_image(str(folder), "me/app:2", hosts=["h2"])
        assert list(only) == ["h2"]
        with pytest.raises(ImageNotFound, match="^" + re.escape("image me/app:2: no such image")):
            one.runtime.images.find("me/app:2")
        (folder / "Dockerfile").write_text("FROM rock/absent:1\n")
        with pytest.raises(ImageNotFound) as caught:
            await cluster.build_image(folder, "me/app:3")
        assert str(caught.value).startswith("host h1: building me/app:3: base image rock/absent:1")
        assert "; host h2: building me/app:3: base image rock/absent:1" in str(caught.value)
        assert caught.value.details["step"] == "Step 1/1 : FROM rock/absent:1"


async def test_the_sdk_checks_its_arguments_before_sending_anything(tmp_path: Path) -> None:
    folder = context(tmp_path / "ctx", f"FROM {SH_IMAGE}\n")
    (tmp_path / "file").write_text("x")
    async with (
        open_fake(runtime=FakeRuntime(host_id="h1", images=[SH_IMAGE])) as fake,
        open_cluster([AgentConnector(fake.server)]) as cluster,
    ):
        cases: list[tuple[dict[str, Any], type[Exception], str]] = [
            ({"context": tmp_path / "nope"}, FileNotFound, f"{tmp_path}/nope: no such local"),
            (
                {"context": tmp_path / "file"},
                BadRequest,
                f"build_image: context {tmp_path}/file is",
            ),
            ({"context": 3}, BadRequest, "build_image: context must be a local folder .* not int"),
            ({"tag": ""}, BadRequest, "build_image: tag must be an image name .* not ''"),
            ({"tag": b"x"}, BadRequest, "build_image: tag must be an image name .* not b'x'"),
            ({"dockerfile": "Other"}, FileNotFound, "build_image: no Dockerfile 'Other' in the"),
            ({"dockerfile": 1}, BadRequest, "build_image: dockerfile must be a path inside"),
            ({"hosts": []}, BadRequest, "build_image: hosts is empty; give None for every"),
            ({"hosts": "h1"}, BadRequest, r"build_image: hosts must be a list of host ids \(str"),
            (
                {"hosts": ["h9"]},
                BadRequest,
                r"build_image: no host 'h9' in this cluster \(hosts: h1",
            ),
        ]
        for changes, error, message in cases:
            arguments: dict[str, Any] = {"context": folder, "tag": "me/app:1", **changes}
            with pytest.raises(error, match=f"^{message}"):
                await cluster.build_image(**arguments)
        assert fake.runtime.images.tags() == [SH_IMAGE]


async def test_an_agent_without_the_build_capability_is_refused_before_sending(
    tmp_path: Path,
) -> None:
    folder = context(tmp_path / "ctx", f"FROM {SH_IMAGE}\n")
    agent = FakeAgent(host_id="old", images=[SH_IMAGE])
    async with open_cluster([FakeAgentConnector(agent)]) as cluster:
        with pytest.raises(BadRequest) as caught:
            await cluster.build_image(folder, "me/app:1")
        assert str(caught.value) == (
            f"host old: the agent of host old (version {FAKE_AGENT_VERSION}) cannot build images:"
            " upgrade rock-agent there"
        )
    assert not [m for m in agent.received if isinstance(m, BuildImage)]
