#!/usr/bin/env bash
# CI's second leg: tests that need torchvision. torchvision does not import beside the CPU torch of the main
# environment, so this leg uses its own virtualenv (.venv-openclip) with a torch/torchvision pair that import
# together. It runs the open_clip backend's tests (open-clip-torch imports torchvision) and the proof that the
# native Qwen3-VL backends equal sentence-transformers / transformers' full Qwen3VLProcessor on the same
# weights. MMEMBED_TORCHVISION_LEG=1 makes a missing torchvision fail these tests instead of skipping them.
# CI runs it after scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv-openclip
. .venv-openclip/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q torch==2.14.1 torchvision==0.29.1
python -m pip install -q -e ".[dev]" open-clip-torch
MMEMBED_TORCHVISION_LEG=1 python -m pytest -q tests/test_clip_backends.py tests/test_qwen3_vl_st_equivalence.py "$@"
