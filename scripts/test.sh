#!/usr/bin/env bash
# Install mmembed with every extra into ./.venv (scripts/install.sh) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/install.sh
python -m pytest "$@"
