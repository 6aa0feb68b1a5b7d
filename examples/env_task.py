"""A task environment solved by scripted actions: shell commands in a sandbox, a real verifier.

The task asks for a file; the verifier passes only when the file is right. The "agent" here
is a fixed list of actions (a model would write them), in the task env's format:
``<bash>COMMAND</bash>`` runs a command in the task's persistent shell, ``<submit/>`` ends
the episode and runs the verifier, whose verdict is the reward. A second task shows partial
credit: its verifier prints ``ROCK_SCORE=P/Q``.

Needs Docker and the ``python:3.11`` image (``bash scripts/setup-host.sh``).
"""

from __future__ import annotations

from rock_sdk.envs import TaskEnv, TaskSpec

FIZZ = TaskSpec(
    name="fizzbuzz-file",
    instruction=(
        "Write the FizzBuzz sequence for 1..15 into /work/out.txt, one item per line "
        "(multiples of 3: Fizz, of 5: Buzz, of both: FizzBuzz)."
    ),
    setup=["mkdir -p /work", "cd /work"],
    verifier=(
        "python3 -c \"import sys; want = ['FizzBuzz' if i % 15 == 0 else 'Fizz' if i % 3 == 0 "
        "else 'Buzz' if i % 5 == 0 else str(i) for i in range(1, 16)]; "
        "sys.exit(open('/work/out.txt').read().split() != want)\""
    ),
    max_turns=5,
)

SCRIPT = [
    "Let me look around first. <bash>pwd && ls -la</bash>",
    (
        "<bash>for i in $(seq 1 15); do "
        "if [ $((i % 15)) -eq 0 ]; then echo FizzBuzz; elif [ $((i % 3)) -eq 0 ]; then echo Fizz; "
        "elif [ $((i % 5)) -eq 0 ]; then echo Buzz; else echo $i; fi; done > out.txt</bash>"
    ),
    "<bash>head -5 out.txt</bash>",
    "It looks right. <submit/>",
]

CHECKS = TaskSpec(
    name="three-checks",
    instruction="Create the folders /work/a, /work/b and /work/c.",
    verifier=("n=0; for d in a b c; do [ -d /work/$d ] && n=$((n+1)); done; echo ROCK_SCORE=$n/3"),
    max_turns=3,
)


def main() -> None:
    env = TaskEnv(FIZZ)
    try:
        observation, info = env.reset()
        print(f"[sandbox {info['sandbox_id']}] {observation.splitlines()[0]}")
        for action in SCRIPT:
            observation, reward, terminated, truncated, info = env.step(action)
            print(f"> {action}\n{observation.rstrip()}")
            if terminated or truncated:
                break
        print(f"reward {reward} ({info['outcome']})")

        partial = TaskEnv(CHECKS)
        partial.reset()
        partial.step("<bash>mkdir -p /work/a /work/b</bash>")
        _, reward, _, _, info = partial.step("<submit/>")
        verifier = info["verifier"]
        print(f"partial credit: reward {reward:.3f} ({verifier['passed']:g}/{verifier['total']:g})")
        partial.close()
    finally:
        env.close()


if __name__ == "__main__":
    main()
