"""Run one Harbor trial in a sandbox of the kit: Harbor's oracle agent, then the task's tests.

Harbor (Python >= 3.12, ``pip install '.[harbor]'``) picks the environment by import
path; everything else is Harbor's own code. Usage:

    python examples/integrations/harbor_trial.py TASK_DIR [TRIALS_DIR]

It prints the trial's rewards (``{"reward": 1.0}`` when the reference solution passes) and,
if the trial failed, the error Harbor recorded.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path

from harbor.models.trial.config import AgentConfig, EnvironmentConfig, TaskConfig, TrialConfig
from harbor.trial.trial import Trial


async def main(task_dir: Path, trials_dir: Path) -> None:
    config = TrialConfig(
        task=TaskConfig(path=task_dir),
        trials_dir=trials_dir,
        agent=AgentConfig(name="oracle"),
        environment=EnvironmentConfig(
            import_path="rock_sdk.integrations.harbor:RockEnvironment",
        ),
    )
    trial = await Trial.create(config)
    result = await trial.run()
    rewards = result.verifier_result.rewards if result.verifier_result else None
    error = result.exception_info
    print(json.dumps({"rewards": rewards}))
    if error is not None:
        print(json.dumps({"error": error.exception_type, "message": error.exception_message}))


if __name__ == "__main__":
    task = Path(sys.argv[1])
    trials = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(tempfile.mkdtemp(prefix="trials-"))
    asyncio.run(main(task, trials))
