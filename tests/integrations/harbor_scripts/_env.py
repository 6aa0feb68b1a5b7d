"""The environment the edge-case scripts start: one sandbox of IMAGE for a task at WORK."""

from pathlib import Path

from harbor.models.task.config import EnvironmentConfig
from harbor.models.trial.paths import TrialPaths

from rock_sdk.integrations.harbor import RockEnvironment


def environment(work: Path, name: str, image: str) -> RockEnvironment:
    (work / "environment").mkdir(exist_ok=True)
    return RockEnvironment(
        environment_dir=work / "environment",
        environment_name=name,
        session_id=f"{name}__edge",
        trial_paths=TrialPaths(work / "trial"),
        task_env_config=EnvironmentConfig(docker_image=image, workdir="/app"),
    )
