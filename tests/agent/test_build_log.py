"""`BuildLog` (a build's output read as text) and the fake's Dockerfile reader, as plain calls."""

from __future__ import annotations

from rock_agent._build_log import KEEP, LINE_MAX, BuildLog
from rock_agent._fake_build import parse
from rock_core import BadRequest, ImageNotFound


def test_lines_arriving_in_pieces_are_joined_and_steps_followed() -> None:
    log = BuildLog("me/app:1")
    for piece in ("Step 1/2 : FR", "OM base:1\n ---> abc\n\n", "Step 2/2 : run make all\nbuil"):
        log.feed(piece)
    assert log.lines == ["Step 1/2 : FROM base:1", " ---> abc", "Step 2/2 : run make all", "buil"]
    assert (log.step, log.instruction, log.argument) == (
        "Step 2/2 : run make all",
        "RUN",
        "make all",
    )


def test_only_the_last_lines_are_kept_each_cut_short() -> None:
    log = BuildLog("me/app:1")
    log.feed("".join(f"line {n}\n" for n in range(KEEP + 5)) + "x" * (LINE_MAX + 10) + "\r\n")
    assert len(log.lines) == KEEP
    assert log.lines[0] == "line 6"
    assert log.lines[-1] == "x" * LINE_MAX


def test_a_failed_step_is_a_bad_request_naming_it_with_the_last_lines() -> None:
    log = BuildLog("me/app:1")
    log.feed("Step 1/2 : FROM base:1\nStep 2/2 : RUN false\n")
    error = log.failure(" returned a non-zero code: 1 ")
    assert type(error) is BadRequest
    assert str(error) == (
        "building me/app:1: Step 2/2 : RUN false failed: returned a non-zero code: 1\n"
        "last output lines:\n  Step 1/2 : FROM base:1\n  Step 2/2 : RUN false"
    )
    assert error.details == {
        "step": "Step 2/2 : RUN false",
        "output": "Step 1/2 : FROM base:1\nStep 2/2 : RUN false",
        "image": "me/app:1",
    }


def test_a_failed_from_is_image_not_found_and_no_step_is_said_so() -> None:
    log = BuildLog("me/app:1")
    log.feed("Step 1/3 : FROM base:1 AS build\n")
    error = log.failure("pull access denied")
    assert type(error) is ImageNotFound
    assert str(error) == (
        "building me/app:1: base image base:1 is not on this host and could not be pulled (pull"
        " access denied); pull or build it first\nlast output lines:\n"
        "  Step 1/3 : FROM base:1 AS build"
    )
    early = BuildLog("me/app:1").failure("")
    assert type(early) is BadRequest
    assert str(early) == "building me/app:1: failed before its first step: the build failed"


def test_the_fake_reads_steps_comments_and_continued_lines() -> None:
    text = "# syntax\n\nFROM base:1\nrun a && \\\n    b\nCOPY x y\nENV A=1 \\\n"
    assert parse(text) == [("FROM", "base:1"), ("RUN", "a &&  b"), ("COPY", "x y"), ("ENV", "A=1")]
