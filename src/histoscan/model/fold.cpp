#include "histoscan/model/fold.h"

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/any.h>
#include <torch/nn/modules/conv.h>
#include <torch/utils.h>

#include "histoscan/model/kernels.h"
#include "histoscan/model/resnet.h"

namespace histoscan::model {

namespace nn = torch::nn;

namespace {

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

// True when seq's last layer is a convolution: the next layer's input is then a tensor of its
// own, which that layer may overwrite.
bool ends_in_conv(const nn::Sequential& seq) {
  return !seq->is_empty() && seq->ptr(seq->size() - 1)->as<nn::Conv2d>() != nullptr;
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
        out->push_back(std::string(name), ReluAffine(scale, shift, ends_in_conv(out)));
        ++k, ++folded;
        continue;
      }
    }
    if (m->as<nn::ReLU>() && ends_in_conv(out)) {
      out->push_back(std::string(name), nn::ReLU(nn::ReLUOptions(/*inplace=*/true)));
      continue;
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

ReluAffineImpl::ReluAffineImpl(const torch::Tensor& scale_, const torch::Tensor& shift_, bool in_place_) : in_place(in_place_) {
  scale = register_buffer("scale", scale_.detach().contiguous());
  shift = register_buffer("shift", shift_.detach().contiguous());
}

void ReluAffineImpl::to(torch::Dtype, bool) {}

void ReluAffineImpl::to(torch::Device device, torch::Dtype, bool non_blocking) { Module::to(device, non_blocking); }

torch::Tensor ReluAffineImpl::forward(const torch::Tensor& x) {
  const bool grad = torch::GradMode::is_enabled() && x.requires_grad();
  const bool cpu = x.device().is_cpu() && (x.scalar_type() == torch::kFloat32 || x.scalar_type() == torch::kBFloat16) &&
                   x.dim() == 4 && scale.scalar_type() == torch::kFloat32 && !grad;
  const bool channels_last = x.is_contiguous(torch::MemoryFormat::ChannelsLast);
  if (!cpu || !(channels_last || x.is_contiguous())) {
    auto shape = std::vector<int64_t>{1, -1, 1, 1};
    return torch::addcmul(shift.view(shape).to(x.scalar_type()), torch::relu(x), scale.view(shape).to(x.scalar_type()));
  }
  return relu_affine(x, scale, shift, in_place);
}

int fold_batchnorm(nn::Sequential& net) {
  torch::NoGradGuard no_grad;
  net->eval();
  return fold_sequential(net);
}

}  // namespace histoscan::model
