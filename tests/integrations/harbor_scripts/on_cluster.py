"""A Harbor trial inside `use_cluster`: its sandbox is on the given cluster.

Run by test_harbor.py with the Harbor venv's python: TASK_DIR TRIALS_DIR. Prints the rewards,
the cluster's sandbox count as the agent started, and after the trial.
"""

import asyncio
import sys
from pathlib import Path

from harbor.models.trial.config import AgentConfig, EnvironmentConfig, TaskConfig, TrialConfig
from harbor.trial.hooks import TrialEvent
from harbor.trial.trial import Trial

from rock_sdk import open_cluster
from rock_sdk.integrations.harbor import use_cluster


async def main():
    config = TrialConfig(
        task=TaskConfig(path=Path(sys.argv[1])),
        trials_dir=Path(sys.argv[2]),
        agent=AgentConfig(name="oracle"),
        environment=EnvironmentConfig(import_path="rock_sdk.integrations.harbor:RockEnvironment"),
    )
    async with open_cluster(["local"]) as cluster:
        seen = []

        async def count(event):
            seen.append(len(cluster.sandboxes()))

        with use_cluster(cluster):
            trial = await Trial.create(config)
            trial.add_hook(TrialEvent.AGENT_START, count)
            result = await trial.run()
        print(result.verifier_result.rewards, seen, len(cluster.sandboxes()))


asyncio.run(main())
