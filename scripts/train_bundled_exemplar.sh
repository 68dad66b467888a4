#!/usr/bin/env bash
# Reproduce the bundled exemplar model from scratch, in two runs (issue 30):
#   1. configs/bundled_exemplar.toml: the clip-art model (data, training, held-out evaluation) in
#      runs/bundled_exemplar, by scripts/train_bundled.sh (its options and environment);
#   2. configs/bundled_exemplar_photos.toml: its transfer sub-net fine-tuned with the correspondence
#      input on photographs and clip art together, in runs/bundled_exemplar_photos, evaluated on
#      the held-out photos (whole photos never trained on) and illustrations.
# Then: python scripts/bundle_model.py runs/bundled_exemplar_photos exemplar \
#           --model-override correspondence_stride=2
# Environment (beside train_bundled.sh's): PHOTO_DATA (default data/photos128, made from Debian's
# wallpaper packages, refcolor/assets/photo_sources.tsv), MIXED (default data/mixed128).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/train_bundled.sh exemplar "$@"

PYTHON=${PYTHON:-python3}
NICE=${NICE:-0}
DATA=${DATA:-data/openclipart128}
PHOTO_DATA=${PHOTO_DATA:-data/photos128}
MIXED=${MIXED:-data/mixed128}
RUN=runs/bundled_exemplar_photos
if [ ! -d "$PHOTO_DATA/train" ]; then
    "$PYTHON" scripts/prepare_training_folder.py photos "$PHOTO_DATA" --size 128 --crops 200
fi
if [ ! -d "$MIXED/train" ]; then
    # Two subfolders of one training folder; hard links (the folder walk skips symbolic links).
    mkdir -p "$MIXED/train"
    cp -al "$PHOTO_DATA/train" "$MIXED/train/photos"
    cp -al "$DATA/train" "$MIXED/train/openclipart"
fi
train=(nice -n "$NICE" "$PYTHON" -m refcolor train --config configs/bundled_exemplar_photos.toml
       --init-weights runs/bundled_exemplar --data "$MIXED/train" --out "$RUN")
if [ -d "$RUN/checkpoints" ] && [ -n "$(ls -A "$RUN/checkpoints" 2>/dev/null)" ]; then
    train+=(--resume)
fi
"${train[@]}"
for set in "$PHOTO_DATA/heldout photos" "$DATA/heldout heldout"; do
    read -r data name <<< "$set"
    for warp in mild strong; do
        nice -n "$NICE" "$PYTHON" -m refcolor evaluate --model exemplar --checkpoint "$RUN" --data "$data" \
            --warp "$warp" --out "$RUN/eval_${name}_$warp"
        cat "$RUN/eval_${name}_$warp/exemplar_eval.md"
    done
done
