#!/usr/bin/env bash
# Install mmembed into ./.venv (CPU torch first, so pip never pulls a multi-GB CUDA build) and run the demo:
# fetch the Tux Paint clip-art stamps (Debian package, once), index the images offline, run a few searches.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[all]"
mmembed demo "$@"
