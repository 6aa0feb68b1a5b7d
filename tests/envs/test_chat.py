"""The chat wrapper: conversations of role/content messages around any environment."""

from __future__ import annotations

from typing import Any

import pytest

from rock_core._errors import BadRequest
from rock_sdk.envs import ChatEnv, make

from .custom_envs import EchoEnv

UP = "\\boxed{up}"


def test_messages_carry_observations_suffixes_and_replies() -> None:
    chat = ChatEnv(make("game:Sokoban-v0-easy"), system_prompt="Solve it.")
    local = make("game:Sokoban-v0-easy")
    messages, info = chat.reset(seed=3)
    observation, expected_info = local.reset(seed=3)
    assert info == expected_info
    assert messages == [
        {"role": "system", "content": "Solve it."},
        {"role": "user", "content": f"{observation}\n{info['suffix']}"},
    ]
    messages, reward, terminated, truncated, info = chat.step(f"I push up: {UP}")
    expected = local.step(UP)
    assert (reward, terminated, truncated, info) == expected[1:]
    assert messages[2:] == [
        {"role": "assistant", "content": f"I push up: {UP}"},
        {"role": "user", "content": f"{expected[0]}\n{expected[4]['suffix']}"},
    ]
    assert chat.messages == messages and chat.messages is not chat.messages
    messages.append({"role": "user", "content": "tampering"})
    assert len(chat.messages) == 4
    messages, *_ = chat.reset(seed=3)
    assert len(messages) == 2  # a new conversation
    chat.close()


def test_actions_may_be_a_message_or_a_conversation() -> None:
    chat = ChatEnv(EchoEnv(), include_suffix=False)
    messages, _ = chat.reset(seed=1)
    assert messages == [{"role": "user", "content": "hello 1"}]
    messages, *_ = chat.step({"role": "assistant", "content": "one"})
    messages, *_ = chat.step([*messages, {"role": "assistant", "content": "two"}])
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", "hello 1"),
        ("assistant", "one"),
        ("user", "one"),
        ("assistant", "two"),
        ("user", "two"),
    ]


@pytest.mark.parametrize(
    ("action", "message"),
    [
        ({"role": "user", "content": "x"}, "must be the assistant's message, got role 'user'"),
        ({"role": "assistant"}, "a chat action is the assistant's text"),
        ({"role": "assistant", "content": 3}, "a chat action is the assistant's text"),
        ([], "an empty conversation is not an action"),
        ([{"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}], "role 'user'"),
        (42, "a chat action is the assistant's text"),
    ],
)
def test_anything_else_is_refused(action: Any, message: str) -> None:
    chat = ChatEnv(EchoEnv())
    chat.reset()
    with pytest.raises(BadRequest, match=message):
        chat.step(action)
    assert len(chat.messages) == 1  # a refused action adds nothing


@pytest.mark.anyio
async def test_async_twins_wrap_the_environments() -> None:
    chat = ChatEnv(make("game:GuessTheNumber-v0-easy"))
    messages, _ = await chat.areset(seed=0)
    messages, *_ = await chat.astep("\\boxed{5}")
    assert messages[-2] == {"role": "assistant", "content": "\\boxed{5}"}
    assert messages[-1]["content"].startswith("At turn 1")
    await chat.aclose()
    assert "ChatEnv" in repr(chat)
