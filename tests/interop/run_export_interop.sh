#!/usr/bin/env bash
# Models that travel, on real PCam patches:
# 1. seed-cnn and resnet, trained briefly, exported as TorchScript, a WSInfer folder and ONNX:
#    plain PyTorch, WSInfer's conventions (config valid against WSInfer's schema) and OpenCV's DNN
#    (Python) give histoscan's probabilities (check_exported_models.py);
# 2. the PyTorch peer, trained for one epoch and traced (peer_as_torchscript.py): histoscan's
#    evaluate of that model gives the AUC of the peer's own predictions (histoscan metrics), within 1e-6.
# usage: run_export_interop.sh HISTOSCAN SHARED_DATA SOURCE_DIR
set -euo pipefail
bin=$1 data=$2 src=$3
x=$data/pcam-h5/camelyonpatch_level_2_split_valid_x.h5
y=$data/pcam-h5/camelyonpatch_level_2_split_valid_y.h5
peer=$data/../peers/torch_seed_recipe.py
schema=$data/../interop/wsinfer-model-config.schema.json
if [ ! -f "$x" ] || [ ! -f "$peer" ] || [ ! -f "$schema" ]; then echo "skipped: no $x, $peer or $schema"; exit 77; fi
python=/usr/bin/python3
"$python" -c 'import torch, torchvision, h5py, onnx, cv2, jsonschema' 2>/dev/null ||
  { echo "skipped: Debian's python3-torch, -torchvision, -h5py, -onnx, -opencv and -jsonschema are needed"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for model in seed-cnn resnet; do
  "$bin" train "$data/pcam-subset/train" --per-class 300 --epochs 2 --batch 16 --valid "$x" --out "$work/$model" --no-progress \
    --model "$model" >/dev/null
  "$bin" evaluate "$work/$model/best.pt" "$x" --out "$work/$model/eval" --bootstrap 0 >/dev/null
  "$bin" export "$work/$model/best.pt" --out "$work/$model/model.pt"
  "$bin" export "$work/$model/best.pt" --out "$work/$model/wsinfer" --format wsinfer
  "$bin" export "$work/$model/best.pt" --out "$work/$model/model.onnx"
  echo "== $model"
  "$python" "$src/tests/interop/check_exported_models.py" "$work/$model/eval/predictions.csv" "$x" \
    --torchscript "$work/$model/model.pt" --wsinfer "$work/$model/wsinfer" --schema "$schema" --onnx "$work/$model/model.onnx"
done

echo "== the PyTorch peer's traced network, scored by histoscan"
"$python" "$src/tests/interop/peer_as_torchscript.py" "$peer" "$data/pcam-subset/train" "$x" "$y" "$work/peer"
"$bin" evaluate "$work/peer/model" "$x" --out "$work/peer/eval" --bootstrap 0 >/dev/null
"$bin" metrics "$work/peer/peer_predictions.csv" --out "$work/peer/metrics" --bootstrap 0 >/dev/null
"$python" - "$work/peer/eval/metrics.json" "$work/peer/metrics/metrics.json" <<'PY'
import json, sys
ours, theirs = (json.load(open(f))["auc"] for f in sys.argv[1:3])
print(f"AUC of the peer's model: histoscan evaluate {ours:.9f}, the peer's own predictions {theirs:.9f}")
sys.exit(0 if abs(ours - theirs) <= 1e-6 else 1)
PY
