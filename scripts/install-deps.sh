#!/usr/bin/env bash
# Installs the Debian 12 packages histoscan builds and tests with, when any is missing.
# Needs root (or sudo) only when something is missing.
set -euo pipefail
packages=(
  cmake make g++ pkg-config
  libtorch-dev libopenblas0-openmp        # LibTorch 1.13 and a fast BLAS behind it
  libgloo-dev                             # headers c10d's ProcessGroupGloo includes (distributed training)
  libopencv-dev libhdf5-dev libtiff-dev   # TIFF/JPEG/PNG decoding, TIFF headers, PCam HDF5
  libcairo2-dev                           # plots
  libopenslide-dev                        # whole-slide images (scan)
  chromium                                # the HTML report test opens the report headless
  libcli11-dev nlohmann-json3-dev libfccp-dev
  libpugixml-dev                          # ASAP XML annotations (CAMELYON16/17) of cohort scans
  libonnx-dev                             # ONNX's protobuf types and checker (export --format onnx)
  libgtest-dev
  python3 python3-torch python3-h5py python3-sklearn   # interop test and metric fixtures
  python3-torchvision python3-pil         # the PyTorch peer (interop test, bench), which imports both
  python3-onnx python3-opencv python3-jsonschema   # exported models checked by ONNX, OpenCV and WSInfer's schema
  python3-matplotlib                      # examples/notebook.py (its ROC plot), run by the Python tests
  pybind11-dev python3-dev python3-numpy python3-pytest   # import histoscan (the Python module) and its tests
  clang-format clang-tidy                 # make check-format (CI) and make lint (.clang-format, .clang-tidy)
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "error: missing packages (${missing[*]}); run as root or install them" >&2; exit 1; }
  sudo=sudo
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
