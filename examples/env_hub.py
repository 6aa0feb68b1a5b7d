"""The hub: a local store of environment specs, and ``make("hub:NAME")``.

A spec names a registered env id with its own parameters, an entry point, or a whole task
(see examples/env_task.py), plus tags, an owner and a description. Specs live as JSON files in
the user's data folder (``$ROCK_HOME``, else ``$XDG_DATA_HOME/rock``, else
``~/.local/share/rock``); this example points ``ROCK_HOME`` at a throwaway folder so it leaves
nothing behind. The same store from the shell:

    rock env register sokoban-long --env game:Sokoban-v0-hard --param max_turns=80 --tag games
    rock env ls --tag games
    rock env show sokoban-long
    rock env rm sokoban-long

No Docker: a game spec without an image runs in process (with ``image=...`` it would run in
a sandbox of that image), and a task spec does nothing until it is reset.
"""

from __future__ import annotations

import os
import tempfile

from rock_sdk.envs import Hub, HubSpec, TaskSpec, make


def main() -> None:
    with tempfile.TemporaryDirectory() as home:
        os.environ["ROCK_HOME"] = home
        hub = Hub()
        hub.register(
            HubSpec(
                name="sokoban-long",
                env="game:Sokoban-v0-hard",
                parameters={"max_turns": 80},
                tags=["games", "puzzle"],
                description="hard Sokoban with more turns",
            )
        )
        hub.register(
            HubSpec(
                name="hello-file",
                task=TaskSpec(
                    instruction="Write 'hello' into /tmp/hello.txt.",
                    verifier="grep -qx hello /tmp/hello.txt",
                ),
                tags=["shell"],
            )
        )
        for spec in hub.list():
            print(
                f"{spec.name:<13} {spec.kind:<6} tags={','.join(spec.tags):<13} owner={spec.owner}"
            )
        print("tagged games:", [spec.name for spec in hub.list(tag="games")])

        env = make("hub:sokoban-long")
        _, info = env.reset(seed=0)
        print(f"hub:sokoban-long -> {type(env).__name__}, max_turns={info['max_turns']}")
        print(info["suffix"])
        task = make("hub:hello-file", max_turns=3)
        print(f"hub:hello-file -> {type(task).__name__}, max_turns={task.task.max_turns}")  # type: ignore[attr-defined]

        try:
            make("hub:sokoban-lng")
        except LookupError as exc:  # NotFound
            print(f"error: {exc}")
        hub.delete("sokoban-long")
        print("left:", hub.names())


if __name__ == "__main__":
    main()
