#!/usr/bin/env bash
# Sourced by scripts/demo.sh and scripts/test.sh: create ./.venv and install mmembed with every extra into it,
# the CPU build of torch first (a bare `pip install torch` may pull a multi-GB CUDA build).
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[all]"
