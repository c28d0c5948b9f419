#!/usr/bin/env bash
# Install mmembed with every extra into ./.venv (CPU torch first) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[all]"
python -m pytest "$@"
