#include "histoscan/train/synthetic.h"

#include <algorithm>
#include <cstring>
#include <string>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

namespace histoscan::train {

data::PatchStore synthetic_patches(std::size_t n, std::uint64_t seed, c10::Device device) {
  data::PatchStore store;
  store.pixels.resize(n * data::kPatchBytes);
  store.ids.reserve(n);
  store.labels.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    store.ids.push_back("synthetic-" + std::to_string(i));
    store.labels.push_back(static_cast<int>(i % 2));
  }
  torch::NoGradGuard no_grad;
  // On the CPU a generator of its own; on a GPU the device's default one, seeded here.
  if (!device.is_cpu()) torch::cuda::manual_seed(seed);
  at::Generator gen =
      device.is_cpu() ? at::make_generator<at::CPUGeneratorImpl>(seed) : at::globalContext().defaultGenerator(device);
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32).device(device);
  const auto stroma = torch::tensor({235.0f, 170.0f, 210.0f}).view({1, 1, 1, 3}).to(device);
  const auto nucleus = torch::tensor({90.0f, 50.0f, 140.0f}).view({1, 1, 1, 3}).to(device);
  auto centre = torch::zeros({1, 96, 96}, f32);
  centre.narrow(1, 32, 32).narrow(2, 32, 32).fill_(1.0f);
  const std::size_t kChunk = device.is_cpu() ? 1024 : 16384;
  for (std::size_t start = 0; start < n; start += kChunk) {
    const int64_t b = static_cast<int64_t>(std::min(kChunk, n - start));
    auto label = (torch::arange(static_cast<int64_t>(start), static_cast<int64_t>(start) + b, f32).remainder(2)).view({b, 1, 1});
    auto density = 0.015f + 0.06f * label * centre;                                        // b x 96 x 96
    auto seeds = (torch::rand({b, 96, 96}, gen, f32) < density).to(torch::kFloat32);       // nucleus centres
    auto nuclei = torch::max_pool2d(seeds.unsqueeze(1), 3, 1, 1).squeeze(1).unsqueeze(3);  // 3 x 3 nuclei
    auto x = stroma + 12.0f * torch::randn({b, 96, 96, 3}, gen, f32);
    x = x * (1 - nuclei) + nucleus * nuclei;
    auto bytes = x.clamp(0, 255).round().to(torch::kUInt8).to(torch::kCPU).contiguous();
    std::memcpy(store.pixels.data() + start * data::kPatchBytes, bytes.data_ptr<std::uint8_t>(),
                static_cast<std::size_t>(b) * data::kPatchBytes);
  }
  return store;
}

}  // namespace histoscan::train
