"""`ChatEnv`: any environment as a conversation of role/content messages (ROCK's Chat protocol).

Rules:
- Observations are the whole conversation so far, a list of ``{"role", "content"}`` dicts
  (a new list each time, safe to keep): an optional ``system`` message, then ``user``
  messages (what the environment says) alternating with ``assistant`` messages (the
  actions). It always ends with a ``user`` message, the environment's latest turn.
- A user message holds the observation, followed by ``info["suffix"]`` (a game's board and
  move hint) on a new line when the environment gives one and `include_suffix` is on.
- An action is the assistant's reply: a string, a message with role ``assistant``, or a
  whole conversation ending with one (as a chat model's client returns it); its content is
  what the wrapped environment steps with. Anything else raises `BadRequest`.
- Rewards, flags and info are the wrapped environment's, unchanged. ``reset`` starts a new
  conversation. Async twins call the wrapped environment's, so sandbox-backed environments
  keep their concurrency.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

from rock_core import BadRequest

from ._env import Env

__all__ = ["ChatEnv", "Message"]


class Message(TypedDict):
    """One chat message."""

    role: str
    content: str


#: What `ChatEnv.step` accepts: the assistant's text, its message, or a conversation.
ChatAction = str | Mapping[str, Any] | Sequence[Mapping[str, Any]]


class ChatEnv:
    """Wrap `env` so observations are messages and actions are the assistant's replies."""

    def __init__(
        self, env: Env, *, system_prompt: str | None = None, include_suffix: bool = True
    ) -> None:
        #: The wrapped environment.
        self.env = env
        self.system_prompt = system_prompt
        self.include_suffix = include_suffix
        self._messages: list[Message] = []

    @property
    def messages(self) -> list[Message]:
        """The conversation so far (a copy)."""
        return [Message(role=m["role"], content=m["content"]) for m in self._messages]

    def _user(self, observation: str, info: Mapping[str, Any]) -> None:
        suffix = info.get("suffix") if self.include_suffix else None
        content = f"{observation}\n{suffix}" if isinstance(suffix, str) and suffix else observation
        self._messages.append(Message(role="user", content=content))

    def _start(
        self, observation: str, info: dict[str, Any]
    ) -> tuple[list[Message], dict[str, Any]]:
        self._messages = []
        if self.system_prompt is not None:
            self._messages.append(Message(role="system", content=self.system_prompt))
        self._user(observation, info)
        return self.messages, info

    def _content(self, action: ChatAction) -> str:
        message: Any = action
        if not isinstance(action, str | Mapping) and isinstance(action, Sequence):
            if not action:
                raise BadRequest("an empty conversation is not an action")
            message = action[-1]
        if isinstance(message, str):
            return message
        if isinstance(message, Mapping):
            if message.get("role") != "assistant":
                raise BadRequest(
                    f"the action must be the assistant's message, got role {message.get('role')!r}"
                )
            content = message.get("content")
            if isinstance(content, str):
                return content
        raise BadRequest(
            "a chat action is the assistant's text, a {'role': 'assistant', 'content': str} "
            f"message, or a conversation ending with one; got {action!r}"
        )

    def _after(
        self, content: str, step: tuple[str, float, bool, bool, dict[str, Any]]
    ) -> tuple[list[Message], float, bool, bool, dict[str, Any]]:
        observation, reward, terminated, truncated, info = step
        self._messages.append(Message(role="assistant", content=content))
        self._user(observation, info)
        return self.messages, reward, terminated, truncated, info

    def reset(
        self, seed: int | None = None, *, options: dict[str, Any] | None = None
    ) -> tuple[list[Message], dict[str, Any]]:
        """Reset the wrapped environment and start a new conversation."""
        return self._start(*self.env.reset(seed, options=options))

    def step(self, action: ChatAction) -> tuple[list[Message], float, bool, bool, dict[str, Any]]:
        """Step with the assistant's reply; the conversation grows by it and the answer."""
        content = self._content(action)
        return self._after(content, self.env.step(content))

    def close(self) -> None:
        """Close the wrapped environment."""
        self.env.close()

    async def areset(
        self, seed: int | None = None, *, options: dict[str, Any] | None = None
    ) -> tuple[list[Message], dict[str, Any]]:
        """Async twin of `reset`."""
        return self._start(*(await self.env.areset(seed, options=options)))

    async def astep(
        self, action: ChatAction
    ) -> tuple[list[Message], float, bool, bool, dict[str, Any]]:
        """Async twin of `step`."""
        content = self._content(action)
        return self._after(content, await self.env.astep(content))

    async def aclose(self) -> None:
        """Async twin of `close`."""
        await self.env.aclose()

    def __repr__(self) -> str:
        return f"<ChatEnv {self.env!r}>"
