#pragma once
// Batched inference from patches in memory (pipeline/predict_stream.h streams them from files).
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <c10/core/Device.h>
#include <torch/nn/modules/container/sequential.h>

#include "histoscan/data/store.h"
#include "histoscan/predict/views.h"

namespace histoscan::predict {

namespace fs = std::filesystem;

// "auto" -> CUDA when this LibTorch has a GPU, else CPU; "cpu"; "cuda" (InputError when absent).
c10::Device resolve_device(const std::string& name);

// What evaluate, predict and scan do before scoring: resolves `device` (resolve_device),
// moves `net` there, folds its BatchNorm layers into the layers before them
// (model::fold_batchnorm: the same scores, one pass less over each layer's activations) and,
// with amp (--amp), converts it to bfloat16 for inference (model::to_bfloat16_for_inference; a
// warning where the CPU lacks bfloat16 arithmetic). The network is for inference only after.
c10::Device prepare_inference(torch::nn::Sequential& net, const std::string& device, bool amp);

// Rows the network scores at a time on the CPU, whatever the batch: seed-cnn's activations
// (16 channels of 96 x 96 a patch) are passed over twice per layer (the convolution, then ReLU
// and the folded BatchNorm in one pass), and in batches of 256 they stream from memory each
// time; 16 rows stay in cache.
// The bench's inference from memory ran 1.68x as fast (docs/performance.md, "Inference 16 rows
// at a time on the CPU").
inline constexpr int kCpuInferenceRows = 16;

// Logits of n patches (27,648 RGB bytes each, contiguous at pixels), in eval mode without
// autograd, `batch` at a time (on the CPU, at most cpu_rows at a time). The network must
// already be on `device`. With amp, through model::forward (bfloat16 but for the last layer;
// prepare_inference may have converted the network). Logits are float32. With views > 1
// (--tta), each patch is scored in that many of its dihedral views (tissue has no up or left)
// and the logit of their mean probability is returned, views times the work: 2 is the patch
// and its left-right mirror, 4 adds the half turn and its mirror, 8 all four quarter turns,
// each mirrored. Any other count is refused (InputError).
std::vector<float> predict_logits(torch::nn::Sequential& net, const std::uint8_t* pixels, std::size_t n, int batch,
                                  c10::Device device, int views = 1, bool amp = false, int cpu_rows = kCpuInferenceRows);
// views was a bool (--tta on or off) until --tta took a count: `true` would now mean 1 view.
std::vector<float> predict_logits(torch::nn::Sequential& net, const std::uint8_t* pixels, std::size_t n, int batch,
                                  c10::Device device, bool views, bool amp = false, int cpu_rows = kCpuInferenceRows) = delete;

// 1 / (1 + exp(-logit)) of each.
std::vector<double> sigmoid(const std::vector<float>& logits);

}  // namespace histoscan::predict
