#include "histoscan/model/fold.h"

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include "histoscan/model/resnet.h"

namespace histoscan::model {

namespace nn = torch::nn;

namespace {

// y = max(x, 0) * scale[c] + shift[c] for `rows` rows of `c` channels (channels-last order).
void relu_affine_rows(const float* __restrict in, float* __restrict out, int64_t rows, int64_t c, const float* scale, const float* shift) {
  for (int64_t r = 0; r < rows; ++r, in += c, out += c)
    for (int64_t k = 0; k < c; ++k) out[k] = std::max(in[k], 0.0f) * scale[k] + shift[k];
}

// The same for `n` values of one channel (NCHW order).
void relu_affine_plane(const float* __restrict in, float* __restrict out, int64_t n, float scale, float shift) {
  for (int64_t i = 0; i < n; ++i) out[i] = std::max(in[i], 0.0f) * scale + shift;
}

// An eval-mode BatchNorm2d as y = x * scale + shift per channel, as LibTorch computes it:
// scale = weight / sqrt(running_var + eps), shift = bias - running_mean * scale.
std::pair<torch::Tensor, torch::Tensor> batchnorm_affine(const nn::BatchNorm2dImpl& bn) {
  auto scale = torch::rsqrt(bn.running_var + bn.options.eps());
  if (bn.options.affine()) scale = scale * bn.weight;
  auto shift = -bn.running_mean * scale;
  if (bn.options.affine()) shift = shift + bn.bias;
  return {scale.to(torch::kFloat32), shift.to(torch::kFloat32)};
}

bool foldable(const nn::BatchNorm2dImpl& bn) {
  return bn.options.track_running_stats() && bn.running_mean.defined() && bn.running_var.defined() &&
         bn.running_var.scalar_type() == torch::kFloat32;
}

nn::Conv2d fold_into_conv(const nn::Conv2dImpl& conv, const nn::BatchNorm2dImpl& bn) {
  auto [scale, shift] = batchnorm_affine(bn);
  const auto& w = conv.weight;
  auto weight = (w * scale.view({-1, 1, 1, 1})).contiguous(w.suggest_memory_format());
  auto bias = conv.bias.defined() ? conv.bias * scale + shift : shift;
  const auto& o = conv.options;
  nn::Conv2d fused(nn::Conv2dOptions(o.in_channels(), o.out_channels(), o.kernel_size())
                       .stride(o.stride())
                       .padding(o.padding())
                       .dilation(o.dilation())
                       .groups(o.groups())
                       .padding_mode(o.padding_mode())
                       .bias(true));
  fused->to(w.device(), w.scalar_type());
  fused->weight.set_data(weight);
  fused->bias.set_data(bias.contiguous());
  fused->weight.set_requires_grad(false);
  fused->bias.set_requires_grad(false);
  return fused;
}

int fold_sequential(nn::Sequential& seq) {
  std::vector<std::pair<std::string, nn::AnyModule>> layers;
  const auto children = seq->named_children();
  std::size_t i = 0;
  for (const auto& any : *seq) layers.emplace_back(children[i++].key(), any);
  nn::Sequential out;
  int folded = 0;
  for (std::size_t k = 0; k < layers.size(); ++k) {
    const auto& [name, any] = layers[k];
    auto m = any.ptr();
    auto* bn = k + 1 < layers.size() ? layers[k + 1].second.ptr()->as<nn::BatchNorm2d>() : nullptr;
    if (bn && foldable(*bn)) {
      if (auto* conv = m->as<nn::Conv2d>()) {
        out->push_back(std::string(name), fold_into_conv(*conv, *bn));
        ++k, ++folded;
        continue;
      }
      if (m->as<nn::ReLU>()) {
        auto [scale, shift] = batchnorm_affine(*bn);
        out->push_back(std::string(name), ReluAffine(scale, shift));
        ++k, ++folded;
        continue;
      }
    }
    if (auto* block = m->as<BasicBlock>()) {
      folded += fold_sequential(block->body) + fold_sequential(block->shortcut);
      block->replace_module("body", block->body);
      block->replace_module("shortcut", block->shortcut);
    }
    out->push_back(std::string(name), any);
  }
  seq = out;
  return folded;
}

}  // namespace

ReluAffineImpl::ReluAffineImpl(torch::Tensor scale_, torch::Tensor shift_) {
  scale = register_buffer("scale", scale_.detach().contiguous());
  shift = register_buffer("shift", shift_.detach().contiguous());
}

torch::Tensor ReluAffineImpl::forward(const torch::Tensor& x) {
  const bool cpu_float = x.device().is_cpu() && x.scalar_type() == torch::kFloat32 && x.dim() == 4 &&
                         scale.scalar_type() == torch::kFloat32 && !(torch::GradMode::is_enabled() && x.requires_grad());
  const bool channels_last = x.is_contiguous(torch::MemoryFormat::ChannelsLast);
  if (!cpu_float || !(channels_last || x.is_contiguous())) {
    auto shape = std::vector<int64_t>{1, -1, 1, 1};
    return torch::addcmul(shift.view(shape).to(x.scalar_type()), torch::relu(x), scale.view(shape).to(x.scalar_type()));
  }
  auto y = torch::empty_like(x);  // keeps x's layout
  const float* in = x.data_ptr<float>();
  float* out = y.data_ptr<float>();
  const float* a = scale.data_ptr<float>();
  const float* b = shift.data_ptr<float>();
  const int64_t c = x.size(1), plane = x.size(2) * x.size(3);
  if (channels_last) {
    // Rows of c channels, a few thousand values per task.
    const int64_t rows = x.size(0) * plane, grain = std::max<int64_t>(1, 8192 / std::max<int64_t>(c, 1));
    at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
      relu_affine_rows(in + begin * c, out + begin * c, end - begin, c, a, b);
    });
  } else {
    at::parallel_for(0, x.size(0) * c, std::max<int64_t>(1, 8192 / std::max<int64_t>(plane, 1)), [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) relu_affine_plane(in + p * plane, out + p * plane, plane, a[p % c], b[p % c]);
    });
  }
  return y;
}

int fold_batchnorm(nn::Sequential& net) {
  torch::NoGradGuard no_grad;
  net->eval();
  return fold_sequential(net);
}

}  // namespace histoscan::model
