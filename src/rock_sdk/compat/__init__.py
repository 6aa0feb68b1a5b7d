"""Compatibility layers: programs written for another sandbox kit run on this one.

`rock_sdk.compat.rock` takes ROCK's SDK objects and answers with ROCK's response fields, so
a ROCK sandbox script ports by changing its imports.
"""
