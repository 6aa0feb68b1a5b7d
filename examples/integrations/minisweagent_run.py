"""mini-swe-agent's own agent loop, run in a sandbox of the kit.

mini-swe-agent resolves the environment by its import path, exactly as a YAML config's
``environment_class`` would; its scripted `DeterministicModel` stands in for a language model,
so this runs without an API key. With a real model, use ``get_model(...)`` instead.

    pip install '.[mini-swe-agent]'
    python examples/integrations/minisweagent_run.py [--image python:3.11] [--hosts local]
"""

import argparse
import os

os.environ.setdefault("MSWEA_SILENT_STARTUP", "1")  # mini-swe-agent prints a banner otherwise

from minisweagent.agents.default import DefaultAgent
from minisweagent.environments import get_environment
from minisweagent.models.test_models import DeterministicModel, make_output

FIB = (
    "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n"
)
PRINT = "python3 -c 'from fib import fib; print(fib(10))'"


def action(command: str) -> dict:
    """One scripted model reply holding one bash action."""
    return make_output(f"```mswea_bash_command\n{command}\n```", [{"command": command}])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="python:3.11")
    parser.add_argument("--hosts", nargs="+", default=["local"], help="local or ssh://host")
    options = parser.parse_args()
    env = get_environment(
        {
            "environment_class": "rock_sdk.integrations.minisweagent.RockEnvironment",
            "image": options.image,
            "hosts": options.hosts,
            "timeout": 60,
        }
    )
    model = DeterministicModel(
        outputs=[
            action("mkdir -p /work && cd /work"),  # the session keeps this cd for what follows
            action(f"cat > fib.py <<'EOF'\n{FIB}EOF"),
            action("python3 -c 'from fib import fib; assert fib(10) == 55' && echo tests pass"),
            # A first output line that says "done" to mini-swe-agent; the rest is the answer.
            action(f"echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT && {PRINT}"),
        ]
    )
    agent = DefaultAgent(
        model,
        env,
        system_template="You are a helpful assistant on {{system}}.",
        instance_template="{{task}}",
        step_limit=10,
        cost_limit=0,  # the scripted model "costs" 1 a call; 0 turns the limit off
    )
    try:
        result = agent.run("Write fib(n) in /work/fib.py and print fib(10).")
    finally:
        env.cleanup()  # deletes the sandbox
    for message in agent.messages[2:]:
        if message["role"] == "user":
            print(message["content"])
    print(f"exit status: {result['exit_status']}")
    print(f"submission: {result['submission']}", end="")


if __name__ == "__main__":
    main()
