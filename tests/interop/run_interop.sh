#!/usr/bin/env bash
# Trains seed-cnn briefly on real PCam patches, evaluates it on the PCam HDF5 sample, and checks that
# PyTorch (the peer's seed_cnn) gives the same probabilities from the checkpoint.
# usage: run_interop.sh HISTOSCAN SHARED_DATA SOURCE_DIR
set -euo pipefail
bin=$1 data=$2 src=$3
x=$data/pcam-h5/camelyonpatch_level_2_split_valid_x.h5
peer=$data/../peers/torch_seed_recipe.py
if [ ! -f "$x" ] || [ ! -f "$peer" ]; then echo "skipped: no $x or $peer"; exit 77; fi
python=/usr/bin/python3
"$python" -c 'import torch, h5py' 2>/dev/null || { echo "skipped: Debian's python3-torch and python3-h5py are needed"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin" train "$data/pcam-subset/train" --per-class 300 --epochs 2 --batch 16 --valid "$x" --out "$work/run" --no-progress \
  --model seed-cnn  # PyTorch's side defines seed-cnn
"$bin" evaluate "$work/run/best.pt" "$x" --out "$work/eval" >/dev/null
"$python" "$src/tests/interop/check_pytorch_interop.py" "$work/run/best.pt" "$work/eval/predictions.csv" "$x" "$peer"
