#include "histoscan/train/transforms.h"

#include <torch/torch.h>

namespace histoscan::train {

torch::Tensor to_float_nchw(const torch::Tensor& u8_nhwc) {
  return u8_nhwc.permute({0, 3, 1, 2}).to(torch::kFloat32).div_(255.0f).contiguous();
}

torch::Tensor standardize(const torch::Tensor& x) {
  auto mean = x.mean({1, 2, 3}, /*keepdim=*/true);
  auto std = x.std({1, 2, 3}, /*unbiased=*/false, /*keepdim=*/true);
  return torch::where(std > 0, (x - mean) / std.clamp_min(1e-12), x);
}

torch::Tensor random_flips(const torch::Tensor& x, std::mt19937_64& rng) {
  const int64_t n = x.size(0);
  std::vector<uint8_t> h(static_cast<std::size_t>(n)), v(static_cast<std::size_t>(n));
  std::bernoulli_distribution coin(0.5);
  for (int64_t i = 0; i < n; ++i) {
    h[i] = coin(rng);
    v[i] = coin(rng);
  }
  auto opts = torch::TensorOptions().dtype(torch::kBool);
  auto hmask = torch::from_blob(h.data(), {n, 1, 1, 1}, torch::kUInt8).to(opts).to(x.device());
  auto vmask = torch::from_blob(v.data(), {n, 1, 1, 1}, torch::kUInt8).to(opts).to(x.device());
  auto out = torch::where(hmask, x.flip({3}), x);
  return torch::where(vmask, out.flip({2}), out);
}

torch::Tensor preprocess(const torch::Tensor& u8_nhwc) { return standardize(to_float_nchw(u8_nhwc)); }

}  // namespace histoscan::train
