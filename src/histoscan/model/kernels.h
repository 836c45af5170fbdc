#pragma once
// Element-wise loops LibTorch 1.13 does in several passes or one element at a time, done in one
// pass over LibTorch's threads (at::parallel_for) and built for AVX-512, AVX2 and the baseline.
// CPU float32 tensors (and bfloat16 where said) only; the callers fall back to LibTorch's
// operations for anything else.
#include <torch/types.h>

namespace histoscan::model {

// max(x, 0) * scale[c] + shift[c] for an N x C x H x W float32 or bfloat16 CPU tensor x,
// contiguous in NCHW or channels-last (the result in x's type and layout; bfloat16 is computed
// in float32 and rounded once); scale and shift: C float32 values. in_place writes the result
// over x and returns it (refused for a tensor that records gradients).
torch::Tensor relu_affine(const torch::Tensor& x, const torch::Tensor& scale, const torch::Tensor& shift, bool in_place = false);

// A float32 tensor of like's shape and layout whose elements are independently 1 / keep with
// probability keep and 0 otherwise: dropout's mask, scaled (keep in (0, 1]). Element i (its
// index in NCHW order) is 1 / keep where the high 32 bits of SplitMix64(seed + i * golden ratio)
// fall below keep * 2^32, the seed drawn from LibTorch's default CPU generator: a seeded run
// draws the same mask whatever the thread count and layout, and a resumed run continues the
// same draws. (LibTorch 1.13's bernoulli_ draws one element at a time on one thread.)
torch::Tensor bernoulli_mask(const torch::Tensor& like, double keep);

}  // namespace histoscan::model
