#!/usr/bin/env bash
# Install mmembed into ./.venv (scripts/install.sh) and run the demo: fetch the Tux Paint clip-art stamps
# (Debian package, once), index them offline, run a few searches.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/install.sh
mmembed demo "$@"
