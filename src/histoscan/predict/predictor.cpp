#include "histoscan/predict/predictor.h"

#include <cmath>

#include <torch/torch.h>

#include "histoscan/interop/foreign_model.h"
#include "histoscan/model/fold.h"
#include "histoscan/model/precision.h"
#include "histoscan/model/preprocess.h"
#include "histoscan/util/error.h"

namespace histoscan::predict {

c10::Device resolve_device(const std::string& name) {
  if (name == "cpu") return torch::kCPU;
  bool cuda = torch::cuda::is_available();
  if (name == "cuda") {
    if (!cuda) throw InputError("--device cuda: no CUDA device is available to this LibTorch; use --device cpu");
    return torch::kCUDA;
  }
  if (name == "auto") return cuda ? c10::Device(torch::kCUDA) : c10::Device(torch::kCPU);
  throw InputError("--device " + name + ": expected auto, cpu or cuda");
}

c10::Device prepare_inference(torch::nn::Sequential& net, const std::string& device, bool amp) {
  c10::Device dev = resolve_device(device);
  net->to(dev);
  model::fold_batchnorm(net);
  if (amp) {
    model::warn_if_amp_is_slow(dev, amp, /*scoring=*/true);
    model::to_bfloat16_for_inference(net);
  }
  return dev;
}

std::vector<float> predict_logits(torch::nn::Sequential& net, const std::uint8_t* pixels, std::size_t n, int batch,
                                  c10::Device device, int views, bool amp, int cpu_rows) {
  check_views(views);
  net->eval();
  c10::InferenceMode guard;
  const bool foreign = interop::is_foreign(net);
  if (foreign) amp = false;  // a model made elsewhere runs as it was saved (float32 in, logits out)
  std::vector<float> out(n);
  auto all = torch::from_blob(const_cast<std::uint8_t*>(pixels), {static_cast<int64_t>(n), 96, 96, 3}, torch::kUInt8);
  // On a GPU nothing waits for it until the end: each batch goes up from page-locked memory
  // without waiting (the next batch's copy into it overlaps the GPU's work on this one), and
  // the logits stay there until one copy back.
  const bool gpu = device.is_cuda();
  torch::Tensor gpu_out;
  if (gpu) gpu_out = torch::empty({static_cast<int64_t>(n)}, torch::TensorOptions().dtype(torch::kFloat32).device(device));
  // On the CPU at most cpu_rows (kCpuInferenceRows) at a time: each layer's activations then
  // stay in cache between the convolution, ReLU and BatchNorm passes over them.
  const auto step = static_cast<std::size_t>(gpu ? batch : std::max(1, std::min(batch, cpu_rows)));
  for (std::size_t start = 0; start < n; start += step) {
    int64_t b = static_cast<int64_t>(std::min(step, n - start));
    auto rows = all.narrow(0, static_cast<int64_t>(start), b);
    // On the CPU a shorter last chunk runs padded to `step` rows (blank patches, whose logits
    // are dropped): oneDNN builds and keeps kernels and buffers for every batch shape it
    // meets, so the 15 possible remainders grew a cohort scan's memory slide after slide
    // (262 to 330 MiB over 20 slides; flat at 252 with one shape, docs/performance.md).
    const int64_t used = b;
    if (!gpu && b < static_cast<int64_t>(step)) {
      auto padded = torch::full({static_cast<int64_t>(step), 96, 96, 3}, 255, torch::kUInt8);
      padded.narrow(0, 0, b).copy_(rows);
      rows = padded;
      b = static_cast<int64_t>(step);
    }
    auto u8 = gpu ? model::upload(rows, device) : rows;
    // A model made elsewhere takes [0, 1] (its config's Normalize is inside ForeignModel).
    auto x = foreign ? model::to_float_channels_last(u8) : model::preprocess(u8);
    torch::Tensor logits;
    if (views == 1) {
      logits = model::forward(net, x, device, amp).reshape({b});
    } else {
      // views / 2 turns a quarter apart (1: none; 2: none and the half turn; 4: all), each also
      // mirrored left-right: the first 2, 4 or 8 views nest, and each set is a group.
      const int64_t turns = views / 2;
      auto mean = torch::zeros({b}, x.options());
      for (int64_t t = 0; t < turns; ++t) {
        const int64_t k = t * (4 / turns);
        auto view = k == 0 ? x : torch::rot90(x, k, {2, 3});
        mean += torch::sigmoid(model::forward(net, view, device, amp).reshape({b}));
        mean += torch::sigmoid(model::forward(net, view.flip({3}), device, amp).reshape({b}));
      }
      mean = (mean / views).clamp(1e-7, 1 - 1e-7);
      logits = torch::log(mean) - torch::log1p(-mean);
    }
    if (gpu) {
      gpu_out.narrow(0, static_cast<int64_t>(start), b).copy_(logits);
      continue;
    }
    logits = logits.to(torch::kCPU, torch::kFloat32).contiguous();
    std::copy_n(logits.data_ptr<float>(), used, out.data() + start);
  }
  if (gpu && n > 0) {
    auto host = gpu_out.to(torch::kCPU);
    std::copy_n(host.data_ptr<float>(), n, out.data());
  }
  return out;
}

std::vector<double> sigmoid(const std::vector<float>& logits) {
  std::vector<double> p(logits.size());
  for (std::size_t i = 0; i < logits.size(); ++i) p[i] = 1.0 / (1.0 + std::exp(-double(logits[i])));
  return p;
}

}  // namespace histoscan::predict
