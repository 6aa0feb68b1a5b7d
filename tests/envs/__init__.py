"""Tests of rock_sdk.envs: the games, the registry, gymnasium glue and the vector envs."""
