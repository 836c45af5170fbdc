#pragma once
// A histoscan network as an ONNX model (opset 13, IR version 8), written with ONNX's own
// protobuf types (Debian libonnx-dev) from interop::describe_network: Debian's LibTorch cannot
// export ONNX by tracing. ONNX's checker passes it before it is written, and OpenCV's DNN module
// runs it (run_onnx_with_opencv).
//
// Input "image": float32 N x 3 x 96 x 96, RGB in [0, 1], NCHW. Each image is standardized
// inside, over its channels and pixels. Output "probability": N x 1.
#include <filesystem>
#include <vector>

#include <torch/types.h>
#include <nlohmann/json.hpp>

#include "histoscan/interop/network_graph.h"

namespace histoscan::interop {

namespace fs = std::filesystem;

inline constexpr int kOnnxOpset = 13;

// Writes the model to `path` (not atomically: the caller writes to a temporary path); `meta`
// goes into the model's metadata_props as "histoscan_metadata". Throws InputError when ONNX's
// checker refuses the graph.
void save_onnx(const std::vector<Layer>& layers, const nlohmann::json& meta, const fs::path& path);

// Runs the ONNX model at `path` on `x` (float N x 3 x 96 x 96) with OpenCV's DNN module (CPU)
// and returns its output, N x 1.
torch::Tensor run_onnx_with_opencv(const fs::path& path, const torch::Tensor& x);

}  // namespace histoscan::interop
