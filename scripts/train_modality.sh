#!/usr/bin/env bash
# The modality-bias recipe (docs/training.md): build training pairs from the emoji/icon training sets (never
# Tux Paint), fine-tune the default model's task adapters with `mmembed train`, and print the before/after
# table on tuxpaint, tuxpaint-mixed and python-faq. Rerunning resumes an interrupted run and reuses the data.
# Usage: scripts/train_modality.sh [WORK_DIR] [extra options of python -m mmembed.train.modality]
set -euo pipefail
WORK="${1:-mmembed-modality}"
shift || true
python -m mmembed.train.modality --work "$WORK" "$@"
