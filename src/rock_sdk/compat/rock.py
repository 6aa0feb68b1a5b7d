"""ROCK's sandbox SDK on this kit: a ROCK sandbox script ports by changing its imports.

    from rock_sdk.compat.rock import CreateBashSessionRequest, Sandbox, SandboxConfig

stands for ROCK's ``rock.actions``, ``rock.actions.sandbox.request``/``response``,
``rock.sdk.sandbox.client`` and ``rock.sdk.sandbox.config`` (rl-rock 1.11.0). There is no
admin server: the sandbox runs on this machine's Docker engine, through this kit's embedded
core. What maps to what, and what is left out, is in docs/integrations.md ("ROCK scripts").
ROCK's GEM environments (``rock.make``) port as ``rock_sdk.make``.

Rules:
- Names, fields and defaults are ROCK's; behaviour is ROCK's where it has a meaning here
  (`_rock_models` for the objects, `_rock_sandbox` for the client, `_rock_plans` for the
  shell text of nohup runs and line-range reads).
- Errors: a failure ROCK answers with a response is answered with one here; every other one
  is this kit's `RockError`, never a foreign exception.
"""

from ._rock_models import (
    Action,
    BashAction,
    BashObservation,
    CloseBashSessionRequest,
    CloseBashSessionResponse,
    CloseResponse,
    CloseSessionRequest,
    CloseSessionResponse,
    Command,
    CommandResponse,
    CreateBashSessionRequest,
    CreateBashSessionResponse,
    CreateSessionRequest,
    CreateSessionResponse,
    ExecuteBashSessionResponse,
    FileUploadResponse,
    IsAliveResponse,
    Observation,
    ReadFileRequest,
    ReadFileResponse,
    RunMode,
    SandboxConfig,
    SandboxStatusResponse,
    UploadMode,
    UploadRequest,
    UploadResponse,
    WriteFileRequest,
    WriteFileResponse,
)
from ._rock_sandbox import Sandbox

__all__ = [
    "Action",
    "BashAction",
    "BashObservation",
    "CloseBashSessionRequest",
    "CloseBashSessionResponse",
    "CloseResponse",
    "CloseSessionRequest",
    "CloseSessionResponse",
    "Command",
    "CommandResponse",
    "CreateBashSessionRequest",
    "CreateBashSessionResponse",
    "CreateSessionRequest",
    "CreateSessionResponse",
    "ExecuteBashSessionResponse",
    "FileUploadResponse",
    "IsAliveResponse",
    "Observation",
    "ReadFileRequest",
    "ReadFileResponse",
    "RunMode",
    "Sandbox",
    "SandboxConfig",
    "SandboxStatusResponse",
    "UploadMode",
    "UploadRequest",
    "UploadResponse",
    "WriteFileRequest",
    "WriteFileResponse",
]
