#pragma once
// Models made elsewhere: a TorchScript model with a WSInfer-style config.json
// (wsinfer/schemas/model-config.schema.json: num_classes, patch_size_pixels, spacing_um_px,
// class_names, transform) scored by evaluate, predict and scan in place of a checkpoint.
//
// WSInfer's conventions, which QuPath's WSInfer extension shares: the model takes the patch
// after `transform` (Resize to `size`, ToTensor: float RGB in [0, 1], Normalize(mean, std) per
// channel) and returns logits, N x num_classes (softmax over classes) or N x 1 / N (sigmoid).
// histoscan scores the class named tumor or tumour (any case), or the one config.json names in
// "tumour_class"; with one output, that output.
#include <cstdint>
#include <filesystem>
#include <string>

#include <torch/csrc/jit/api/module.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/pimpl.h>
#include <nlohmann/json.hpp>

namespace histoscan::interop {

namespace fs = std::filesystem;

// What config.json says, checked.
struct ForeignConfig {
  int64_t num_classes = 1;
  int64_t patch_size = 96;
  double mpp = 0;
  std::vector<std::string> class_names;
  int64_t tumour = 0;   // index of the tumour class
  int64_t resize = 96;  // Resize's size (patch_size when there is none)
  std::vector<double> mean{0, 0, 0}, std{1, 1, 1};
};

// Parses and checks `config` (the contents of `file`, named in errors). Throws InputError
// naming the file and the field.
ForeignConfig parse_foreign_config(const nlohmann::json& config, const std::string& file);

// The model's input: float N x 3 x 96 x 96 in [0, 1] (model::to_float_channels_last, no
// standardization); output N x 1 logits of tumour (for softmax models, the tumour logit minus
// the log-sum-exp of the others, whose sigmoid is the softmax probability).
class ForeignModelImpl : public torch::nn::Module {
 public:
  ForeignModelImpl(const torch::jit::Module& module, const ForeignConfig& config);
  torch::Tensor forward(const torch::Tensor& x);
  void to(torch::Device device, bool non_blocking = false) override;
  void to(torch::Dtype dtype, bool non_blocking = false) override;
  void to(torch::Device device, torch::Dtype dtype, bool non_blocking = false) override;
  void train(bool on = true) override;

 private:
  torch::jit::Module module_;
  ForeignConfig config_;
  torch::Tensor mean_, std_;
};
TORCH_MODULE(ForeignModel);

// True when `net` is a model made elsewhere (its first layer a ForeignModel): it takes input in
// [0, 1], not standardized.
bool is_foreign(const torch::nn::Sequential& net);

// Where a model made elsewhere is: `path` is a folder holding torchscript_model.pt and
// config.json (WSInfer's layout), or a TorchScript file with config.json beside it. Empty
// paths when it is neither.
struct ForeignPaths {
  fs::path model, config;
};
ForeignPaths find_foreign_model(const fs::path& path);

// Loads the model and its config: the network (one ForeignModel) and metadata as a
// checkpoint's ("model": "torchscript", "threshold": 0.5, "patch_mpp", "config"). Runs it once
// on a 2-patch batch to check it: a model with no forward, one whose input size disagrees with
// its config or whose outputs disagree with num_classes is refused (InputError naming the file).
struct ForeignLoaded {
  torch::nn::Sequential net;
  nlohmann::json meta;
};
ForeignLoaded load_foreign_model(const ForeignPaths& paths);

}  // namespace histoscan::interop
