"""Task environments without Docker: the action format, verifier scores, the spec's checks."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from rock_core._errors import BadRequest
from rock_sdk import Sandbox, SandboxConfig
from rock_sdk.envs import ColdStart, SandboxFactory, TaskEnv, TaskSpec, make
from rock_sdk.envs._task_format import Bash, Score, Submit, parse_action, score_verifier

TASK = TaskSpec(instruction="Make /work/x.", verifier="test -e /work/x")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<bash>ls -la</bash>", Bash("ls -la")),
        ("I will look first.\n<bash>\ncd /tmp\nls\n</bash>\n", Bash("cd /tmp\nls")),
        ("<bash></bash>", Bash("")),
        ("<submit/>", Submit(None)),
        ("all done <submit />", Submit(None)),
        ("<submit> 42 </submit>", Submit("42")),
        ("<submit>line 1\nline 2</submit>", Submit("line 1\nline 2")),
        ("<bash>make</bash> then <submit/>", Submit(None)),
        ("<submit/> oops, one more: <bash>ls</bash>", Bash("ls")),
        ("<bash>echo '<submit/>'</bash>", Bash("echo '<submit/>'")),
        ("<bash>a</bash><bash>b</bash>", Bash("b")),
        ("<bash>unclosed", None),
        ("ls -la", None),
        ("<BASH>ls</BASH>", None),
        ("", None),
    ],
)
def test_the_last_complete_tag_is_the_action(text: str, expected: object) -> None:
    assert parse_action(text) == expected


@pytest.mark.parametrize(
    ("output", "exit_code", "timed_out", "expected"),
    [
        ("", 0, False, Score(1.0)),
        ("FAILED\n", 1, False, Score(0.0)),
        ("", None, False, Score(0.0)),
        ("ROCK_SCORE=3/5\n", 1, False, Score(0.6, 3, 5)),
        ("checks...\nROCK_SCORE= 2 / 4 \n", 0, False, Score(0.5, 2, 4)),
        ("ROCK_SCORE=0.25\n", 0, False, Score(0.25)),
        ("ROCK_SCORE=1/4\nROCK_SCORE=4/4\n", 1, False, Score(1.0, 4, 4)),
        ("ROCK_SCORE=7/5\n", 0, False, Score(1.0, 7, 5)),
        ("ROCK_SCORE=3\n", 1, False, Score(1.0)),
        ("ROCK_SCORE=1/2\nROCK_SCORE=2/0\n", 1, False, Score(0.5, 1, 2)),
        ("ROCK_SCORE=2/0\n", 0, False, Score(1.0)),
        ("ROCK_SCORE=abc\n", 1, False, Score(0.0)),
        ("score: ROCK_SCORE=1/1\n", 1, False, Score(0.0)),
        ("ROCK_SCORE=5/5\n", 0, True, Score(0.0)),
    ],
)
def test_verifier_scores(
    output: str, exit_code: int | None, timed_out: bool, expected: Score
) -> None:
    assert score_verifier(output, exit_code, timed_out) == expected


def test_a_spec_from_a_mapping_with_overrides() -> None:
    spec = TaskSpec.coerce({"instruction": "i", "verifier": "v", "setup": ["cd /"]}, max_turns=3)
    assert spec.max_turns == 3 and spec.setup == ["cd /"] and spec.image == "python:3.11"
    assert TaskSpec.coerce(spec) is spec
    config = msgspec.structs.replace(spec, cpus=0.2, network=True, env={"A": "1"}).sandbox_config()
    assert (config.cpus, config.network, config.env, config.image) == (
        0.2,
        True,
        {"A": "1"},
        "python:3.11",
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"instruction": " "}, "instruction is empty"),
        ({"verifier": ""}, "verifier is empty"),
        ({"max_turns": 0}, "max_turns must be at least 1, got 0"),
        ({"output_limit": 0}, "output_limit must be at least 1 byte"),
        ({"command_timeout": 0}, "command_timeout must be positive"),
        ({"files": {"rel/path": "x"}}, "files path 'rel/path' is not absolute"),
        ({"workdir": "work"}, "workdir 'work' is not absolute"),
        ({"memory": "lots"}, "memory 'lots' is not a size"),
        ({"name": "has space"}, "name 'has space' is not letters"),
        ({"image": ""}, "image is empty"),
    ],
)
def test_an_invalid_spec_names_the_problem(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest, match="invalid task spec") as raised:
        TaskSpec.coerce(TASK, **fields)
    assert message in str(raised.value)


def test_unknown_and_mistyped_fields_are_refused() -> None:
    with pytest.raises(
        BadRequest, match="invalid task spec: Object contains unknown field `turns`"
    ):
        TaskSpec.coerce({"instruction": "i", "verifier": "v", "turns": 3})
    with pytest.raises(BadRequest, match=r"Expected `int`, got `str` - at `\$.max_turns`"):
        TaskSpec.coerce(TASK, max_turns="many")
    with pytest.raises(BadRequest, match="a task is a TaskSpec or a mapping"):
        TaskSpec.coerce(["not", "a", "task"])  # type: ignore[arg-type]


def test_task_env_takes_task_overrides_and_builds_nothing_until_reset() -> None:
    env = TaskEnv(TASK, max_turns=4)
    assert env.task.max_turns == 4 and env.sandbox is None and env.factory is None
    env.close()  # never started: nothing to do
    with pytest.raises(BadRequest, match="is closed"):
        env.reset()


def test_a_factory_is_recognised_by_its_methods() -> None:
    class Pool:
        async def acquire(self) -> Sandbox:
            raise AssertionError("not called")

        async def release(self, sandbox: Sandbox) -> None:
            raise AssertionError("not called")

    pool = Pool()
    assert isinstance(pool, SandboxFactory)
    env = TaskEnv(TASK, sandbox=pool)
    assert env.factory is pool
    with pytest.raises(BadRequest, match=r"call `await env.areset\(...\)` in that loop"):
        env.reset()
    with pytest.raises(BadRequest, match="sandbox= takes a Sandbox, a SandboxFactory"):
        TaskEnv(TASK, sandbox=42)  # type: ignore[arg-type]
    assert repr(ColdStart(SandboxConfig(image="x"), cluster=None)) == "ColdStart('x')"  # type: ignore[arg-type]


def test_make_passes_sandbox_arguments_to_task_envs() -> None:
    from rock_sdk.envs import register

    register("test:Task-v0", TaskEnv, task=msgspec.structs.asdict(TASK))
    env = make("test:Task-v0", sandbox=SandboxConfig(image="busybox", cpus=0.1), max_turns=2)
    assert isinstance(env, TaskEnv) and env.task.max_turns == 2
    assert env._config.image == "busybox"
