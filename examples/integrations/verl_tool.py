"""verl's tool loader builds our sandbox tool from verl_tool.yaml; a scripted "model" fixes a
bug through it, and the verifier scores the trajectory (needs `rock-kit[verl]` and Docker).

    python3 examples/integrations/verl_tool.py
"""

import asyncio
from pathlib import Path

from verl.tools.tool_registry import initialize_tools_from_config

from rock_sdk.integrations.verl import close_pools

CONFIG = Path(__file__).with_name("verl_tool.yaml")
TASK = {
    "/work/add.py": "def add(a, b):\n    return a - b\n",
    "/work/test_add.py": "from add import add\nassert add(2, 3) == 5, add(2, 3)\nprint('ok')\n",
}
# What a model would call, one tool call per turn.
CALLS = [
    {"command": "cd /work && ls && python3 test_add.py"},
    {"command": "sed -i 's/a - b/sum((a, b))/' add.py && cat add.py"},
    {"code": "import sys; sys.path.insert(0, '/work'); from add import add; print(add(40, 2))"},
]


async def main() -> None:
    [tool] = initialize_tools_from_config(str(CONFIG))
    try:
        instance, _ = await tool.create(create_kwargs={"files": TASK})
        print(f"reward before: {await tool.calc_reward(instance)}")
        for parameters in CALLS:
            response, _, metrics = await tool.execute(instance, parameters)
            print(f"> {parameters}\n{response.text.rstrip()}  (exit {metrics['exit_code']})")
        print(f"reward after: {await tool.calc_reward(instance)}")
        await tool.release(instance)
    finally:
        await close_pools()


if __name__ == "__main__":
    asyncio.run(main())
