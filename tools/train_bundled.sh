#!/usr/bin/env bash
# Trains the candidates for the bundled model on one GPU, side by side, for
# TIME seconds each (default 180), then evaluates each on the validation photos:
#   rebalanced loss: a narrow ECCV16 (width 0.25, Zhang's 313 Lab bins, k=5) and
#                    the Stanford ColorUNet (32 YUV bins from the data, k=1)
#   L2 regression:   the same two networks, for the colourfulness comparison
# DATA holds train/ and val/ as written by `fastcolor data --out DATA`.
#   DATA=.device_data RUNS=runs TIME=180 bash tools/train_bundled.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DATA=${DATA:-.device_data}
RUNS=${RUNS:-runs}
TIME=${TIME:-180}
WORKERS=${WORKERS:-3}
mkdir -p "$RUNS"
common=(--data "$DATA/train" --val "$DATA/val" --steps 200000 --time-limit "$TIME" --crop 176 --batch 32
        --cache --max-side 512 --workers "$WORKERS" --val-every 2000 --val-images 34 --ckpt-every 4000
        --log-every 200 --no-progress --overwrite)
eccv=(--arch eccv16 --width 0.25 --codebook zhang313 --space lab --lr 5e-4)
unet=(--arch colorunet --width 1 --codebook data --space yuv --bins 32 --lam 0.1 --lr 1e-3)
$PY -m fastcolor train "${common[@]}" "${eccv[@]}" --out "$RUNS/eccv16_rebalanced" >"$RUNS/eccv16_rebalanced.log" 2>&1 &
$PY -m fastcolor train "${common[@]}" "${unet[@]}" --out "$RUNS/colorunet_rebalanced" >"$RUNS/colorunet_rebalanced.log" 2>&1 &
$PY -m fastcolor train "${common[@]}" "${eccv[@]}" --loss l2 --out "$RUNS/eccv16_l2" >"$RUNS/eccv16_l2.log" 2>&1 &
$PY -m fastcolor train "${common[@]}" "${unet[@]}" --loss l2 --out "$RUNS/colorunet_l2" >"$RUNS/colorunet_l2.log" 2>&1 &
wait
for run in eccv16_rebalanced colorunet_rebalanced eccv16_l2 colorunet_l2; do
  echo "== $run: $(tail -n 1 "$RUNS/$run/log.jsonl" 2>/dev/null)"
  $PY -m fastcolor evaluate --data "$DATA/val" --model "$RUNS/$run" --json "$RUNS/$run/eval.json" 2>&1 | tail -n 6
  $PY -m fastcolor evaluate --data "$DATA/val" --model "$RUNS/$run" --prior imagenet \
    --json "$RUNS/$run/eval_imagenet_prior.json" 2>&1 | tail -n 6
done
