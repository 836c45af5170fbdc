#pragma once
// Preprocessing and augmentation as batched tensor operations (never per-pixel loops).
#include <cstdint>
#include <random>

#include <torch/types.h>

namespace histoscan::train {

// uint8 N x 96 x 96 x 3 (HWC, RGB) -> float N x 3 x 96 x 96 in [0, 1].
torch::Tensor to_float_nchw(const torch::Tensor& u8_nhwc);

// Per-image standardization as the notebook: (x - mean) / std over each image's pixels and
// channels (population std); an image whose std is 0 is left unchanged.
torch::Tensor standardize(const torch::Tensor& x);

// Random horizontal and vertical flips, each with probability 0.5 per image, drawn from rng.
torch::Tensor random_flips(const torch::Tensor& x, std::mt19937_64& rng);

// What the model sees at evaluation: to_float_nchw then standardize.
torch::Tensor preprocess(const torch::Tensor& u8_nhwc);

}  // namespace histoscan::train
