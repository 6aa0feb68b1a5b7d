"""The in-sandbox server and its code bundle, run here on a bare interpreter (``python3 -S``).

``-S`` leaves out site-packages, so the server sees what a sandbox's python3 sees: the
standard library and the bundle, no gymnasium, no msgspec.
"""

from __future__ import annotations

import io
import json
import random
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from rock_core._errors import BadRequest, NotFound
from rock_sdk import LoopThread
from rock_sdk.envs import make, registry
from rock_sdk.envs._bundle import bundle_for
from rock_sdk.envs._remote import entry_point_name
from rock_sdk.envs._remote_server import REPLY_PREFIX, serve

EASY = [env_id for env_id in registry.ids("game:") if env_id.endswith("-easy")]


def _replies(output: str) -> list[dict[str, Any]]:
    lines = [line for line in output.split("\n") if line]  # not splitlines: \x1e
    assert all(line.startswith(REPLY_PREFIX) for line in lines), output
    return [json.loads(line[len(REPLY_PREFIX) :]) for line in lines]


def _serve(bundle: Path, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    boot = (
        f"import sys; sys.path.insert(0, {str(bundle)!r}); "
        "from rock_sdk.envs._remote_server import main; main()"
    )
    done = subprocess.run(
        [sys.executable, "-S", "-c", boot],
        input="".join(json.dumps(r) + "\n" for r in requests),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return _replies(done.stdout)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bundle") / "envs.zip"
    path.write_bytes(bundle_for("tests.envs.custom_envs").data)
    return path


def _make_request(env_id: str) -> dict[str, Any]:
    spec = registry.spec(env_id)
    return {"op": "make", "entry_point": entry_point_name(spec), "kwargs": dict(spec.kwargs)}


@pytest.mark.parametrize("env_id", EASY)
def test_the_server_plays_exactly_as_in_process(bundle: Path, env_id: str) -> None:
    local = make(env_id)
    rng = random.Random(env_id)
    requests: list[dict[str, Any]] = [_make_request(env_id), {"op": "reset", "seed": 11}]
    expected: list[Any] = [None, list(local.reset(seed=11))]
    for _ in range(60):
        action = local.sample_random_action() if rng.random() > 0.1 else "no box"
        step = local.step(action)
        requests.append({"op": "step", "action": action})
        expected.append(list(step))
        if step[2] or step[3]:
            requests.append({"op": "reset", "seed": None})
            expected.append(list(local.reset()))
    requests = [{**r, "id": n} for n, r in enumerate(requests)] + [{"op": "close", "id": -1}]
    replies = _serve(bundle, requests)
    assert [r["id"] for r in replies] == [*range(len(expected)), -1]
    assert all(r["ok"] for r in replies), [r for r in replies if not r["ok"]][:1]
    assert [r["result"] for r in replies[:-1]] == json.loads(json.dumps(expected))


def test_errors_carry_the_kits_codes(bundle: Path) -> None:
    replies = _serve(
        bundle,
        [
            {"op": "step", "action": "x", "id": 1},
            {"op": "make", "entry_point": "nope.module:Env", "id": 2},
            {"op": "make", "entry_point": "rock_sdk.envs._sokoban:SokobanEnv",
             "kwargs": {"num_boxes": 0}, "id": 3},
            {"op": "make", "entry_point": "tests.envs.custom_envs:EchoEnv", "id": 4},
            {"op": "step", "action": "boom", "id": 5},
            {"op": "reset", "seed": 1, "options": {"a": 1}, "id": 6},
            {"op": "step", "action": "noise", "id": 7},
            {"op": "fly", "id": 8},
        ],
    )  # fmt: skip
    codes = [(r["id"], r["ok"], r.get("code")) for r in replies]
    assert codes == [
        (1, False, "bad_request"),
        (2, False, "not_found"),
        (3, False, "bad_request"),
        (4, True, None),
        (5, False, "rock_error"),
        (6, True, None),
        (7, True, None),
        (8, False, "bad_request"),
    ]
    assert replies[0]["message"] == "'step' before make"
    assert replies[1]["message"].startswith("cannot import entry point 'nope.module:Env'")
    assert replies[2]["message"] == "Sokoban: num_boxes must be at least 1, got 0"
    assert replies[4]["message"] == "the environment raised RuntimeError: the environment blew up"
    assert "Traceback" in replies[4]["traceback"]
    assert replies[5]["result"] == ["hello 1", {"options": {"a": 1}, "gymnasium": False}]
    assert replies[7]["message"] == "unknown op 'fly'"


class OddInfoEnv:
    """Steps whose info JSON cannot hold: ``tuple`` gives a tuple key, ``loop`` a cycle."""

    def reset(
        self, seed: int | None = None, *, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        return "start", {"seed": seed}

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[Any, Any]]:
        info: dict[Any, Any] = {"turn": 1, "odd": object()}  # repr'd: still sendable
        if action == "tuple":
            info = {(1, 2): "a pair"}
        elif action == "loop":
            info["self"] = info
        return action, 1.0, False, False, info

    def close(self) -> None:
        pass


def test_a_result_json_cannot_hold_is_an_error_reply_and_the_server_goes_on() -> None:
    requests = [
        {"op": "make", "entry_point": f"{__name__}:OddInfoEnv", "id": 1},
        {"op": "reset", "seed": 3, "id": 2},
        {"op": "step", "action": "tuple", "id": 3},
        {"op": "step", "action": "loop", "id": 4},
        {"op": "step", "action": "fine", "id": 5},
        {"op": "close", "id": 6},
    ]
    out = io.StringIO()
    serve(io.StringIO("".join(json.dumps(r) + "\n" for r in requests)), out)
    replies = _replies(out.getvalue())
    assert [(r["id"], r["ok"], r.get("code")) for r in replies] == [
        (1, True, None),
        (2, True, None),
        (3, False, "rock_error"),
        (4, False, "rock_error"),
        (5, True, None),
        (6, True, None),
    ]
    assert replies[2]["message"] == (
        "the environment's step result cannot be sent as JSON: "
        "keys must be str, int, float, bool or None, not tuple"
    )
    assert replies[3]["message"] == (
        "the environment's step result cannot be sent as JSON: Circular reference detected"
    )
    assert "TypeError" in replies[2]["traceback"]
    result = replies[4]["result"]
    assert result[:4] == ["fine", 1.0, False, False]
    assert result[4]["turn"] == 1 and result[4]["odd"].startswith("<object object at ")


def test_the_bundle_is_deterministic_and_self_contained() -> None:
    ours = bundle_for()
    assert bundle_for() is ours  # cached
    names = zipfile.ZipFile(io.BytesIO(ours.data)).namelist()
    assert names == sorted(names)
    for name in (
        "rock_core/__init__.py",
        "rock_core/_errors.py",
        "rock_sdk/__init__.py",
        "rock_sdk/envs/__init__.py",
        "rock_sdk/envs/_remote_server.py",
        "rock_sdk/envs/_nogym.py",
        "rock_sdk/envs/data/words.txt",
    ):
        assert name in names
    assert not any("__pycache__" in name or name.startswith("tests/") for name in names)
    assert ours.path == f"/tmp/rock-envs/{ours.digest}.zip"
    theirs = zipfile.ZipFile(io.BytesIO(bundle_for("tests.envs.custom_envs").data)).namelist()
    assert "tests/envs/custom_envs.py" in theirs and "tests/__init__.py" in theirs
    assert bundle_for("json").data == ours.data  # the standard library is there already
    with pytest.raises(BadRequest, match="defined in the script being run"):
        bundle_for("__main__")
    with pytest.raises(NotFound, match="cannot find module 'no_such_module_here'"):
        bundle_for("no_such_module_here.sub")


def test_the_loop_thread_runs_coroutines_and_stops() -> None:
    loop = LoopThread()

    async def double(x: int) -> int:
        return 2 * x

    async def fail() -> None:
        raise BadRequest("nope")

    assert loop.running and loop.call(double, 21) == 42
    with pytest.raises(BadRequest, match="nope"):
        loop.call(fail)
    loop.stop()
    loop.stop()  # twice is fine
    assert not loop.running
    with pytest.raises(BadRequest, match="this environment is closed"):
        loop.call(double, 1)


# ---- several environments per server, batches -------------------------------------------


def _run(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = io.StringIO()
    serve(io.StringIO("".join(json.dumps(r) + "\n" for r in requests)), out)
    return _replies(out.getvalue())


ECHO = "tests.envs.custom_envs:EchoEnv"


def test_a_batch_runs_each_envs_calls_and_keeps_their_failures_apart() -> None:
    replies = _run(
        [
            {"op": "make", "env": 0, "entry_point": ECHO, "id": 1},
            {"op": "make", "env": 7, "entry_point": ECHO, "kwargs": {"greeting": "yo"}, "id": 2},
            {"op": "batch", "id": 3, "calls": [
                {"op": "reset", "env": 0, "seed": 1},
                {"op": "reset", "env": 7, "seed": 2, "options": {"x": 1}},
                {"op": "step", "env": 3, "action": "a"},
            ]},
            {"op": "batch", "id": 4, "calls": [
                {"op": "step", "env": 0, "action": "boom"},
                {"op": "step", "env": 7, "action": "fine\x00\u00e9"},
                {"op": "step", "env": 7, "action": 5},
                {"op": "batch", "calls": []},
                {"op": "close", "env": 0},
                {"op": "step", "env": 0, "action": "gone"},
            ]},
            {"op": "step", "env": 7, "action": "alone", "id": 5},
            {"op": "make", "env": 7, "entry_point": ECHO, "id": 6},
            {"op": "step", "env": True, "action": "x", "id": 7},
            {"op": "batch", "calls": "nope", "id": 8},
        ]
    )  # fmt: skip
    assert [(r["id"], r["ok"]) for r in replies] == [
        (1, True), (2, True), (3, True), (4, True), (5, True), (6, False), (7, False), (8, False)
    ]  # fmt: skip
    first, second = replies[2]["result"], replies[3]["result"]
    assert first[0] == {"ok": True, "result": ["hello 1", {"options": None, "gymnasium": True}]}
    assert first[1]["result"] == ["yo 2", {"options": {"x": 1}, "gymnasium": True}]
    assert (first[2]["ok"], first[2]["message"]) == (False, "'step' before make of environment 3")
    assert [o["ok"] for o in second] == [False, True, False, False, True, False]
    assert second[0]["message"] == "the environment raised RuntimeError: the environment blew up"
    assert "Traceback" in second[0]["traceback"]
    assert second[1]["result"] == ["fine\x00\u00e9", 0.5, False, False, {"turn": 1}]
    assert second[2]["message"] == "a step's action is a str, got 5"
    assert second[3]["message"] == "a batch cannot hold a batch"
    assert second[5]["message"] == "'step' before make of environment 0"
    assert replies[4]["result"][0] == "alone"  # env 7 went on: two steps, then this one
    assert replies[5]["message"] == "environment 7 exists already"
    assert replies[6]["message"] == "env must be an int slot number, got True"
    assert replies[7]["message"] == "a batch's calls are a list, got 'nope'"


def test_a_long_batch_reply_comes_in_parts_and_an_oversized_result_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rock_sdk.envs import _remote_server

    monkeypatch.setattr(_remote_server, "PART_BYTES", 200)
    monkeypatch.setattr(_remote_server, "MAX_RESULT_BYTES", 1000)
    steps = [{"op": "step", "env": 0, "action": f"{n:03d}" * 20} for n in range(6)]
    steps.append({"op": "step", "env": 0, "action": "x" * 2000})
    replies = _run(
        [
            {"op": "make", "entry_point": ECHO, "kwargs": {"max_turns": 99}, "id": 1},
            {"op": "reset", "seed": 0, "id": 2},
            {"op": "batch", "calls": steps, "id": 3},
        ]
    )
    parts = replies[2:]
    assert len(parts) > 2 and all(p["id"] == 3 for p in parts)
    assert [p.get("more", False) for p in parts] == [True] * (len(parts) - 1) + [False]
    outcomes = [o for p in parts for o in p["result"]]
    assert [o["result"][0] for o in outcomes[:6]] == [f"{n:03d}" * 20 for n in range(6)]
    assert outcomes[6]["message"] == (
        "the environment's step result is 2036 bytes as JSON, above the limit of 1000 bytes a "
        "reply may carry"
    )


def test_close_without_env_ends_every_environment_and_the_server() -> None:
    replies = _run(
        [
            {"op": "make", "env": 1, "entry_point": ECHO, "id": 1},
            {"op": "make", "env": 2, "entry_point": ECHO, "id": 2},
            {"op": "close", "id": 3},
            {"op": "reset", "env": 1, "id": 4},  # never read: the server has exited
        ]
    )
    assert [(r["id"], r["ok"]) for r in replies] == [(1, True), (2, True), (3, True)]


def test_lines_that_are_not_requests_are_refused_and_the_server_goes_on() -> None:
    out = io.StringIO()
    serve(io.StringIO('{"op": \n[1, 2]\n{"op": "make", "entry_point": "' + ECHO + '"}\n'), out)
    replies = _replies(out.getvalue())
    assert [r["code"] if not r["ok"] else "ok" for r in replies] == [
        "bad_request",
        "bad_request",
        "ok",
    ]
    assert replies[0]["message"].startswith("a request line is not JSON: ")
    assert replies[1]["message"] == "a request is a JSON object, got [1, 2]"
