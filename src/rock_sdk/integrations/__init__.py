"""Adapters that make the kit a backend of the harnesses and trainers people already run.

One module per framework, each selected by the framework's own plug-in point (an import path
or a class name in its config). Nothing here is imported by ``import rock_sdk``: a module is
loaded only when the framework asks for it, and each needs its package, an optional extra
(``pip install '.[harbor]'`` and so on; see docs/integrations.md).

Rules:
- An adapter runs every command on a persistent session of the sandbox, never one
  ``docker exec`` per command.
- An adapter imports only the public names of rock_core and rock_sdk.
- Errors reach the framework in the form it expects, with our message kept.
"""
