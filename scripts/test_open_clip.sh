#!/usr/bin/env bash
# The open_clip backend's tests need open-clip-torch, which imports torchvision; torchvision does not import
# beside the CPU torch of the main environment, so this leg uses its own virtualenv (.venv-openclip) with a
# torch/torchvision pair that import together. CI runs it after scripts/test.sh. MMEMBED_REQUIRE_OPEN_CLIP=1
# makes the open_clip tests fail, not skip, if open_clip does not import here.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv-openclip
. .venv-openclip/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q torch==2.14.1 torchvision==0.29.1
python -m pip install -q -e ".[dev]" open-clip-torch
MMEMBED_REQUIRE_OPEN_CLIP=1 python -m pytest -q tests/test_clip_backends.py "$@"
