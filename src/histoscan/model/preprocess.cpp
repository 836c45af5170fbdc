#include "histoscan/model/preprocess.h"

#include <torch/torch.h>

namespace histoscan::model {

torch::Tensor to_float_channels_last(const torch::Tensor& u8_nhwc) {
  return u8_nhwc.permute({0, 3, 1, 2}).to(torch::kFloat32).div_(255.0f).contiguous(torch::MemoryFormat::ChannelsLast);
}

torch::Tensor upload(const torch::Tensor& host, c10::Device device) {
  if (!device.is_cuda()) return host.clone();
  auto pinned = torch::empty(host.sizes(), host.options().pinned_memory(true));
  pinned.copy_(host);
  return pinned.to(device, /*non_blocking=*/true);
}

torch::Tensor standardize(const torch::Tensor& x) {
  auto mean = x.mean({1, 2, 3}, /*keepdim=*/true);
  auto std = x.std({1, 2, 3}, /*unbiased=*/false, /*keepdim=*/true);
  return torch::where(std > 0, (x - mean) / std.clamp_min(1e-12), x);
}

torch::Tensor preprocess(const torch::Tensor& u8_nhwc) { return standardize(to_float_channels_last(u8_nhwc)); }

}  // namespace histoscan::model
