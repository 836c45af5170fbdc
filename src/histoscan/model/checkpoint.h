#pragma once
// One checkpoint file carries the weights and the metadata needed to use them: model name
// and options, preprocessing, threshold, training flags, data source, seed, versions.
// It opens in PyTorch with torch.jit.load; the metadata is the module's string attribute
// `histoscan_metadata` (JSON).
#include <filesystem>
#include <string>

#include <torch/nn/modules/container/sequential.h>
#include <nlohmann/json.hpp>

namespace histoscan::model {

struct Checkpoint {
  torch::nn::Sequential net;
  nlohmann::json meta;  // always has "model" (name), "model_options", "threshold"
};

// Writes net and meta to `path` atomically (temporary file + rename).
void save_checkpoint(const std::filesystem::path& path, const torch::nn::Sequential& net, const nlohmann::json& meta);

// Reads a checkpoint written by save_checkpoint (or a built-in model, by name: model/builtin.h)
// and rebuilds its network on the CPU. Throws
// InputError naming the file when it is missing, damaged, not a histoscan checkpoint, or
// holds weights that do not fit the network its metadata names.
Checkpoint load_checkpoint(const std::filesystem::path& path);

// Rewrites the checkpoint at `path` (atomically: a new file renamed over it) with its
// metadata's "threshold" set to `threshold` and "threshold_rule" to `rule`; the weights
// are copied unchanged. Used by `evaluate --save-threshold`.
void save_threshold(const std::filesystem::path& path, double threshold, const nlohmann::json& rule);

// The cut-off a checkpoint's metadata keeps ("threshold", written by evaluate --save-threshold),
// 0.5 where it keeps none: what predict --binary, scan and evaluate use unless told otherwise.
inline double saved_threshold(const nlohmann::json& meta) { return meta.value("threshold", 0.5); }

// Versions recorded in metadata: histoscan and LibTorch.
nlohmann::json version_info();

}  // namespace histoscan::model
