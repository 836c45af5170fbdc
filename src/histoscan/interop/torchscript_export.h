#pragma once
// A histoscan network as a self-contained TorchScript model: the network's layers (BatchNorm
// folded) and its preprocessing in one `forward`, so plain PyTorch, QuPath's WSInfer extension
// or WSInfer run it with no histoscan code. The code of `forward` is TorchScript source written
// from interop::describe_network and compiled by LibTorch (Module::define): Debian's LibTorch
// cannot script or trace a C++ module.
//
// Input: float32 N x 3 x 96 x 96, RGB in [0, 1] (torchvision's ToTensor), NCHW; uint8 in
// [0, 255] of the same shape is divided by 255 first. Each image is standardized over its
// pixels and channels inside, as histoscan does before its network.
#include <filesystem>
#include <vector>

#include <nlohmann/json.hpp>

#include "histoscan/interop/network_graph.h"

namespace histoscan::interop {

namespace fs = std::filesystem;

enum class ScriptOutput {
  probability,  // N tumour probabilities (sigmoid of the network's logit)
  two_logits,   // N x 2 logits [0, logit]: softmax gives [P(normal), P(tumour)] (WSInfer, QuPath)
};

// Writes the model to `path` atomically. `meta` (the checkpoint's metadata, with an "export"
// entry added) is kept as the string attribute `histoscan_metadata`. With views > 1, forward
// averages the probabilities of that many dihedral views, the ones --tta=N scores.
void save_torchscript(const std::vector<Layer>& layers, const nlohmann::json& meta, const fs::path& path, ScriptOutput output,
                      int views);

// WSInfer's model config (wsinfer/schemas/model-config.schema.json) for a histoscan network:
// 2 classes [normal, tumor] over softmax, 96 px patches at `mpp` µm/px, transform
// Resize(96), ToTensor (standardization is inside the model).
nlohmann::json wsinfer_config(double mpp);

}  // namespace histoscan::interop
