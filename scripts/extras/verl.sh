#!/usr/bin/env bash
# The verl extra (rock_sdk.integrations.verl), for its tests: verl==0.9.1 and only what its tool
# loader (verl.tools.tool_registry) imports. verl's full dependency list is for training (CUDA
# torch, vLLM, wandb...): several GB that the tool never touches. torch==2.13.0 is the CPU
# build on this machine's disk; asking for it by version keeps pip from fetching a CUDA one.
# Idempotent: every package is pinned, so a second run installs nothing.
set -euo pipefail
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
pip() { python3 -m pip install -q "$@" 2>&1 | { grep -v -e '^WARNING: ' -e "pip's dependency resolver" -e ', which is not installed' -e ', which is incompatible' || true; }; }
pip torch==2.13.0
pip --no-deps verl==0.9.1
# torch repeated as a requirement, so that no package below can move it.
pip torch==2.13.0 ray==2.60.0 tensordict==0.10.0 omegaconf==2.3.0 transformers==5.10.4
python3 -c 'import verl.tools.tool_registry' 2>/dev/null || {
    echo "verl.sh: verl's tool loader does not import" >&2
    python3 -c 'import verl.tools.tool_registry'
}
