#pragma once
// What a network sees of a patch, the same in training and inference: uint8 RGB bytes to float
// in [0, 1], channels-last, each image standardized (the notebook's per-image standardization).
// As batched tensor operations, never per-pixel loops.
#include <c10/core/Device.h>
#include <torch/types.h>

namespace histoscan::model {

// uint8 N x 96 x 96 x 3 (HWC, RGB) -> float N x 3 x 96 x 96 in [0, 1], in channels-last
// memory (the bytes' own order, and what oneDNN's convolutions run fastest on).
torch::Tensor to_float_channels_last(const torch::Tensor& u8_nhwc);

// `host` (a CPU tensor) on `device`. To a GPU through page-locked memory without waiting: a
// copy from ordinary memory waits for all the work queued before it. (LibTorch's pinned-memory
// allocator keeps the block until the copy ends.) On the CPU, a copy of `host`.
torch::Tensor upload(const torch::Tensor& host, c10::Device device);

// Per-image standardization as the notebook: (x - mean) / std over each image's pixels and
// channels (population std); an image whose std is 0 is left unchanged.
torch::Tensor standardize(const torch::Tensor& x);

// What the model sees: to_float_channels_last then standardize (train_model records it in each
// checkpoint's meta["preprocessing"]).
torch::Tensor preprocess(const torch::Tensor& u8_nhwc);

}  // namespace histoscan::model
