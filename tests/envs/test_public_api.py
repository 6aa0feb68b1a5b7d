"""The package's public surface: what `__all__` promises exists, is documented, and is ours."""

from __future__ import annotations

import inspect

import rock_sdk.envs as envs

TYPE_ALIASES = {"VectorReset", "VectorStep"}


def test_all_names_exist_and_nothing_private_is_exported() -> None:
    assert len(envs.__all__) == len(set(envs.__all__))
    for name in envs.__all__:
        assert not name.startswith("_")
        assert hasattr(envs, name), name
    required = {
        "Env", "make", "register", "list_envs", "registry", "EnvSpec",
        "SyncVectorEnv", "AsyncVectorEnv", "ProcessVectorEnv",
        "TaskSpec", "TaskEnv", "RemoteEnv", "ChatEnv", "SandboxFactory", "ColdStart",
        "Hub", "HubSpec",
    }  # fmt: skip
    assert required <= set(envs.__all__)


def test_public_objects_are_documented() -> None:
    for name in sorted(set(envs.__all__) - TYPE_ALIASES):
        obj = getattr(envs, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        assert inspect.getdoc(obj), f"{name} has no docstring"
        assert obj.__module__.startswith("rock_sdk.envs"), name
        if inspect.isclass(obj):
            for attribute, member in vars(obj).items():
                if attribute.startswith("_") or not inspect.isfunction(member):
                    continue
                assert inspect.getdoc(member), f"{name}.{attribute} has no docstring"


def test_implementation_modules_are_private() -> None:
    for name in envs.__all__:
        obj = getattr(envs, name)
        module = getattr(obj, "__module__", "rock_sdk.envs._x")
        if module.startswith("rock_sdk.envs."):
            assert module.rsplit(".", 1)[1].startswith("_"), f"{name} lives in {module}"
