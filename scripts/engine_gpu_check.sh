#!/usr/bin/env bash
# The GPU proof of the training engine, on a machine that has a CUDA build of PyTorch (a wheel),
# a compiler, CMake and the header-only nlohmann-json and CLI11, and no image libraries:
#   1. builds histoscan-engine alone (-DHISTOSCAN_ENGINE_ONLY=ON) against the wheel's LibTorch;
#   2. trains seed-cnn for 3 epochs on the same synthetic patches on the CPU, on the GPU and on
#      the GPU with --amp, to compare the loss curves;
#   3. times training and prediction on PATCHES patches (made on the GPU) on the GPU: float32,
#      --amp, and float32 with SGD instead of Adam (how much of a step the optimizer costs);
#   4. times the peer's loop on the same GPU (bench/torch_peer_gpu.py) on PEER_PATCHES patches,
#      when PEER names the peer's script.
#
#   5. with STEPS naming "sweep": where a training step's time goes, on 65,536 patches: batch 128
#      to 1024 (a per-step cost shrinks per patch as the batch grows, the GPU's work does not),
#      and the notebook's flips against the default augmentation.
#
#   6. with STEPS naming "layout": training on PATCHES patches in NCHW against channels-last (what
#      --memory-format auto picks on a GPU), float32 and --amp, and the default recipe's resnet;
#      "profile": bench/gpu_step_profile.py, a training step's CUDA kernels by layout and precision.
#
#   scripts/engine_gpu_check.sh OUTDIR      (STEPS: default "curves speed peer", any of those
#                                            and sweep; PREFIX: extra CMake prefixes; PEER: the peer's .py;
#                                            PATCHES: default 220025, Kaggle's training set;
#                                            PEER_PATCHES: default 65536, as the peer preloads
#                                            float32; about 5 minutes on an H200)
# Writes OUTDIR/build.log, OUTDIR/gpu.txt and one JSON file per run; prints a summary.
set -uo pipefail
cd "$(dirname "$0")/.."
OUTDIR=${1:?usage: engine_gpu_check.sh OUTDIR}
mkdir -p "$OUTDIR"
PY=${PYTHON:-python3}
PATCHES=${PATCHES:-220025}
PEER_PATCHES=${PEER_PATCHES:-65536}
STEPS=" ${STEPS:-curves speed peer} "
BUILD=${BUILD:-build-gpu}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUTDIR/gpu.txt"
torch_prefix=$("$PY" -c 'import torch; print(torch.utils.cmake_prefix_path)') || exit 1
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())' |
  tee -a "$OUTDIR/gpu.txt"
# The wheel's libtorch_cuda needs the CUDA libraries that pip installed beside it (nvidia/*/lib),
# at link time as at run time.
site=$(dirname "$(dirname "$torch_prefix")")
for d in "$site"/nvidia/*/lib "$site"/nvidia/cu*/lib; do [ -d "$d" ] && LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"; done
export LD_LIBRARY_PATH
command -v nvcc >/dev/null || export PATH="/usr/local/cuda/bin:$PATH"

start=$SECONDS
if ! { cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DHISTOSCAN_ENGINE_ONLY=ON -DHISTOSCAN_BUILD_TESTS=OFF \
         -DCMAKE_PREFIX_PATH="$torch_prefix;${PREFIX:-}" &&
       cmake --build "$BUILD" --target histoscan_engine_cli -- -k 0; } >"$OUTDIR/build.log" 2>&1; then
  grep -E "error|Error" "$OUTDIR/build.log" | head -40
  tail -25 "$OUTDIR/build.log"
  echo "engine_gpu_check: the build failed; see $OUTDIR/build.log" >&2
  exit 1
fi
echo "built in $((SECONDS - start)) s"
E="$BUILD/histoscan-engine"
runs="$BUILD/gpu-check-runs"

one() {  # NAME ARGS...: one histoscan-engine run, its JSON in OUTDIR/NAME.json
  local name=$1; shift
  echo "== $name: histoscan-engine $*"
  "$E" "$@" --out "$runs/$name" --overwrite --json "$OUTDIR/$name.json" 2>&1 | grep -v '^\s*$' | tail -6
}
if [[ $STEPS == *" curves "* ]]; then
  curve=(--patches 2048 --valid 512 --epochs 3 --seed 7)
  one curve-cpu "${curve[@]}" --device cpu --threads "$(nproc)"
  one curve-cuda "${curve[@]}" --device cuda
  one curve-cuda-amp "${curve[@]}" --device cuda --amp
fi
if [[ $STEPS == *" speed "* ]]; then
  speed=(--patches "$PATCHES" --valid 8192 --epochs 2 --device cuda --make-on device --predict-batch 1024)
  one speed-cuda "${speed[@]}"
  one speed-cuda-amp "${speed[@]}" --amp
  one speed-cuda-sgd "${speed[@]}" --optimizer sgd
fi
if [[ $STEPS == *" profile "* && -n "${PEER:-}" ]]; then
  echo "== a training step by layout and precision (bench/gpu_step_profile.py)"
  "$PY" bench/gpu_step_profile.py --peer "$PEER" >"$OUTDIR/step-profile.json" 2>"$OUTDIR/step-profile.txt"
  cat "$OUTDIR/step-profile.txt"
fi
if [[ $STEPS == *" layout "* ]]; then
  layout=(--patches "$PATCHES" --valid 8192 --epochs 2 --device cuda --make-on device --predict-batch 1024)
  one layout-nchw "${layout[@]}" --memory-format nchw
  one layout-cl "${layout[@]}" --memory-format channels-last
  one layout-cl-amp "${layout[@]}" --memory-format channels-last --amp
fi
if [[ $STEPS == *" sweep "* ]]; then
  sweep=(--patches 65536 --valid 4096 --epochs 2 --device cuda --make-on device --predict-batch 1024)
  for b in 128 256 512 1024; do one "sweep-b$b" "${sweep[@]}" --batch "$b"; done
  one sweep-b128-flips "${sweep[@]}" --augment flips
  one sweep-b512-amp "${sweep[@]}" --batch 512 --amp
fi
if [[ $STEPS == *" peer "* && -n "${PEER:-}" ]]; then
  echo "== peer (bench/torch_peer_gpu.py), float32 and --amp, $PEER_PATCHES patches"
  "$PY" bench/torch_peer_gpu.py --peer "$PEER" --patches "$PEER_PATCHES" --epochs 2 | tee "$OUTDIR/peer-cuda.json"
  "$PY" bench/torch_peer_gpu.py --peer "$PEER" --patches "$PEER_PATCHES" --epochs 2 --amp | tee "$OUTDIR/peer-cuda-amp.json"
fi
if [[ $STEPS == *" layout "* ]]; then
  one layout-resnet-amp "${layout[@]}" --model resnet --augment dihedral+hed=0.1+shift=16 --amp
  one layout-resnet "${layout[@]}" --model resnet --augment dihedral+hed=0.1+shift=16
fi
echo "total $((SECONDS - start)) s"
