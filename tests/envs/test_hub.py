"""The hub of environment specs: its store, its errors, ``make("hub:NAME")`` and ``rock env``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import msgspec
import pytest

from rock_core._errors import AlreadyExists, BadRequest, NotFound
from rock_sdk._cli import main as rock
from rock_sdk.envs import Hub, HubSpec, RemoteEnv, SokobanEnv, TaskEnv, TaskSpec, make
from rock_sdk.envs._hub import data_dir

ROOT = Path(__file__).resolve().parents[2]
TASK = TaskSpec(instruction="Make /work/x.", verifier="test -e /work/x", image="python:3.11")


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Hub:
    monkeypatch.setenv("ROCK_HOME", str(tmp_path / "home"))
    return Hub()


def test_the_data_folder_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROCK_HOME", "/srv/rock")
    monkeypatch.setenv("XDG_DATA_HOME", "/data")
    assert data_dir() == Path("/srv/rock")
    monkeypatch.delenv("ROCK_HOME")
    assert data_dir() == Path("/data/rock")
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", "/home/me")
    assert data_dir() == Path("/home/me/.local/share/rock")
    assert Hub().root == Path("/home/me/.local/share/rock/envs")


def test_register_show_list_and_delete(hub: Hub) -> None:
    sokoban = hub.register(
        HubSpec(name="sokoban-hard", env="game:Sokoban-v0-hard", tags=["games", "puzzle"])
    )
    assert sokoban.owner and sokoban.created > 0 and sokoban.kind == "env"
    task = hub.register(HubSpec(name="make-x", task=TASK, owner="alice", tags=["shell"]))
    assert task.image == "python:3.11" and task.kind == "task"
    assert hub.get("make-x") == task
    assert (hub.root / "make-x.json").is_file()
    assert [s.name for s in hub.list()] == ["make-x", "sokoban-hard"]
    assert [s.name for s in hub.list(tag="puzzle")] == ["sokoban-hard"]
    assert [s.name for s in hub.list(owner="alice")] == ["make-x"]
    assert hub.list(tag="shell", owner="bob") == []
    assert "make-x" in hub and "nope" not in hub and 3 not in hub
    hub.delete("make-x")
    assert hub.names() == ["sokoban-hard"]
    assert [p.name for p in hub.root.iterdir()] == ["sokoban-hard.json"]  # no temporary left


def test_errors_name_the_problem(hub: Hub) -> None:
    hub.register(HubSpec(name="sokoban", env="game:Sokoban-v0"))
    with pytest.raises(AlreadyExists, match="already has an environment named 'sokoban'"):
        hub.register(HubSpec(name="sokoban", env="game:Sokoban-v0-easy"))
    replaced = hub.register(HubSpec(name="sokoban", env="game:Sokoban-v0-easy"), replace=True)
    assert hub.get("sokoban") == replaced
    with pytest.raises(
        NotFound, match="no environment named 'sokobam' in the hub; did you mean 'sokoban'"
    ):
        hub.get("sokobam")
    with pytest.raises(NotFound, match=r"the hub at .* has 1 environment"):
        hub.delete("wordle")
    with pytest.raises(BadRequest, match="is not a hub name"):
        hub.get("../etc/passwd")
    with pytest.raises(BadRequest, match="register takes a HubSpec"):
        hub.register({"name": "x"})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (HubSpec(name="x"), "give exactly one of env .* not none"),
        (HubSpec(name="x", env="game:A", entry_point="m:A"), "not env and entry_point"),
        (HubSpec(name="x", entry_point="module.without.name"), "is not of the form 'module:Name'"),
        (HubSpec(name="-x", env="game:A"), "name '-x' must be 1 to 100 letters"),
        (HubSpec(name="x" * 101, env="game:A"), "must be 1 to 100"),
        (HubSpec(name="x", env="hub:y"), "names another hub spec"),
        (HubSpec(name="x", env="game:A", tags=["two words"]), "tag 'two words' is empty or has"),
        (HubSpec(name="x", task=TASK, image="ubuntu"), "differs from the task's image"),
        (
            HubSpec(name="x", task=msgspec.structs.replace(TASK, max_turns=0)),
            "invalid task spec 'task': max_turns must be at least 1",
        ),
        (HubSpec(name="x", task=TASK, parameters={"turns": 3}), "parameters do not fit the task"),
        (HubSpec(name="x", env="game:A", parameters={"f": object()}), "must be JSON values"),
    ],
)
def test_invalid_specs_are_refused(hub: Hub, spec: HubSpec, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        hub.register(spec)
    assert hub.names() == []


def test_a_broken_file_is_an_error_to_get_and_skipped_by_list(hub: Hub) -> None:
    hub.register(HubSpec(name="good", env="game:Sokoban-v0"))
    (hub.root / "bad.json").write_text("{not json")
    with pytest.raises(BadRequest, match="is not a valid spec"):
        hub.get("bad")
    assert [s.name for s in hub.list()] == ["good"]


def test_concurrent_registrations_of_one_name_have_one_winner(hub: Hub) -> None:
    outcomes: list[str] = []

    def attempt(number: int) -> None:
        try:
            hub.register(HubSpec(name="race", env="game:Sokoban-v0", description=str(number)))
            outcomes.append("won")
        except AlreadyExists:
            outcomes.append("lost")

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["lost"] * 7 + ["won"]
    assert hub.names() == ["race"]


def test_make_builds_what_a_spec_names(hub: Hub) -> None:
    hub.register(HubSpec(name="sok", env="game:Sokoban-v0-hard", parameters={"max_turns": 80}))
    hub.register(
        HubSpec(
            name="sok2",
            entry_point="rock_sdk.envs._sokoban:SokobanEnv",
            parameters={"num_boxes": 1},
        )
    )
    hub.register(HubSpec(name="task", task=TASK, parameters={"max_turns": 5}))
    hub.register(HubSpec(name="boxed", env="game:Sokoban-v0", image="python:3.11"))
    env = make("hub:sok")
    assert isinstance(env, SokobanEnv) and env.env_id == "hub:sok"
    assert env.config.max_turns == 80 and env.config.dim_room == (8, 8)
    assert make("hub:sok", max_turns=10).config.max_turns == 10  # type: ignore[attr-defined]
    assert make("hub:sok2").config.num_boxes == 1  # type: ignore[attr-defined]
    task = make("hub:task")
    assert isinstance(task, TaskEnv) and task.task.max_turns == 5
    assert make("hub:task", max_turns=7).task.max_turns == 7  # type: ignore[attr-defined]
    boxed = make("hub:boxed")
    assert isinstance(boxed, RemoteEnv) and boxed.sandbox is None  # nothing starts until reset
    assert isinstance(make("hub:boxed", sandbox=False), SokobanEnv)
    with pytest.raises(NotFound, match="did you mean 'sok'"):
        make("hub:sokk")
    hub.register(HubSpec(name="ghost", env="game:Ghost-v0"))
    with pytest.raises(NotFound, match="unknown environment id 'game:Ghost-v0'"):
        make("hub:ghost")


# ---- the command line ------------------------------------------------------------------


def test_cli_register_list_show_rm(
    hub: Hub, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert rock(["env", "list"]) == 0
    assert capsys.readouterr().out.split() == [
        "NAME",
        "KIND",
        "TAGS",
        "OWNER",
        "CREATED",
        "DESCRIPTION",
    ]
    code = rock(
        ["env", "register", "sok", "--env", "game:Sokoban-v0-hard", "--param", "max_turns=80",
         "--param", "dim_room=[7, 7]", "--param", "note=plain text", "--tag", "games",
         "--tag", "puzzle", "--description", "hard sokoban", "--owner", "alice"]
    )  # fmt: skip
    assert code == 0 and capsys.readouterr().out == "registered sok\n"
    (tmp_path / "task.json").write_text(json.dumps(msgspec.to_builtins(TASK)))
    assert (
        rock(["env", "register", "task", "--task", str(tmp_path / "task.json"), "--tag", "shell"])
        == 0
    )
    capsys.readouterr()
    assert rock(["env", "list", "--tag", "games"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[1].split()[:4] == [
        "sok",
        "game:Sokoban-v0-hard",
        "games,puzzle",
        "alice",
    ]
    assert lines[1].endswith("hard sokoban")
    assert rock(["env", "list", "--json"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [spec["name"] for spec in listed] == ["sok", "task"]
    assert rock(["env", "show", "sok"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["parameters"] == {"max_turns": 80, "dim_room": [7, 7], "note": "plain text"}
    with pytest.raises(BadRequest, match="unexpected keyword argument 'note'"):
        make("hub:sok")
    (tmp_path / "spec.json").write_text(json.dumps({**shown, "name": "ignored", "created": 0}))
    assert rock(["env", "register", "copy", "--file", str(tmp_path / "spec.json")]) == 0
    assert hub.get("copy").parameters == shown["parameters"]
    assert rock(["env", "rm", "sok", "copy"]) == 0
    assert capsys.readouterr().out == "registered copy\nsok\ncopy\n"
    assert hub.names() == ["task"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["env", "show", "nope"], "rock env show: no environment named 'nope' in the hub"),
        (["env", "rm", "nope"], "rock env rm: no environment named 'nope'"),
        (["env", "register", "x"], "rock env register: invalid environment spec 'x': give exactly"),
        (["env", "register"], "rock env register: give a NAME (or --file SPEC.json)"),
        (["env", "register", "x", "--env", "game:A", "--param", "oops"], "--param wants KEY=VALUE"),
        (["env", "register", "--file", "/no/such.json"], "cannot read the spec file /no/such.json"),
        (["env", "register", "x", "--task", "/dev/null"], "the task file /dev/null is not JSON"),
    ],
)
def test_cli_errors_exit_125_with_the_reason(
    hub: Hub, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert rock(argv) == 125
    assert message in capsys.readouterr().err


def test_cli_a_spec_file_that_is_not_text_exits_125(
    hub: Hub, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "spec.bin").write_bytes(b"\xff\xfe{not utf-8")
    assert rock(["env", "register", "--file", str(tmp_path / "spec.bin")]) == 125
    assert f"the spec file {tmp_path / 'spec.bin'} is not JSON" in capsys.readouterr().err


def test_cli_refuses_a_duplicate_and_a_bad_task_file(
    hub: Hub, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert rock(["env", "register", "a", "--env", "game:Sokoban-v0"]) == 0
    assert rock(["env", "register", "a", "--env", "game:Wordle-v0"]) == 125
    assert "already has an environment named 'a'" in capsys.readouterr().err
    assert rock(["env", "register", "a", "--env", "game:Wordle-v0", "--replace"]) == 0
    (tmp_path / "t.json").write_text('{"instruction": "i"}')
    assert rock(["env", "register", "t", "--task", str(tmp_path / "t.json")]) == 125
    assert "invalid task spec: Object missing required field `verifier`" in capsys.readouterr().err


def test_the_rock_command_manages_the_hub(tmp_path: Path) -> None:
    env = {**os.environ, "ROCK_HOME": str(tmp_path), "PYTHONPATH": str(ROOT / "src")}
    command = [sys.executable, "-m", "rock_sdk._cli", "env"]
    done = subprocess.run(
        [*command, "register", "w", "--env", "game:Wordle-v0-easy", "--tag", "words"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    listed = subprocess.run(
        [*command, "list", "--tag", "words"], capture_output=True, text=True, env=env, check=False
    )
    assert listed.returncode == 0 and listed.stdout.splitlines()[1].startswith("w ")
    assert (tmp_path / "envs" / "w.json").is_file()
