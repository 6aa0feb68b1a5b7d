"""Environments as chat: observations are role/content messages, actions are replies.

`ChatEnv` wraps any environment (a game, a task env, an env in a sandbox). Here a scripted
"model" plays Guess The Number by binary search, reading only the conversation, as a chat
model would; the conversation is what you would send to a chat-completions API. No Docker.
"""

from __future__ import annotations

import re

from rock_sdk.envs import ChatEnv, Message, make


def model(messages: list[Message]) -> Message:
    """A stand-in for a chat model: binary search over the range, from the messages alone."""
    low, high = map(int, re.findall(r"between (\d+) and (\d+)", messages[1]["content"])[0])
    for message in messages[2:]:
        if message["role"] != "user":
            continue
        found = re.search(
            r"guessed (\d+), and the target number is (higher|lower)", message["content"]
        )
        if found:
            guess = int(found.group(1))
            low, high = (guess + 1, high) if found.group(2) == "higher" else (low, guess - 1)
    guess = (low + high) // 2
    return {"role": "assistant", "content": f"Between {low} and {high}, I try \\boxed{{{guess}}}."}


def main() -> None:
    chat = ChatEnv(make("game:GuessTheNumber-v0-hard"), system_prompt="You play number games.")
    messages, _ = chat.reset(seed=7)
    reward, done = 0.0, False
    while not done:
        messages, reward, terminated, truncated, _ = chat.step([*messages, model(messages)])
        done = terminated or truncated
    for message in messages:
        print(f"{message['role']:>9}: {message['content'].splitlines()[0]}")
    print(f"reward {reward} after {len(messages) // 2 - 1} replies")
    chat.close()


if __name__ == "__main__":
    main()
