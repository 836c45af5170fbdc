#include "histoscan/model/resnet.h"

#include <algorithm>

#include <torch/nn.h>

#include "histoscan/model/dropout.h"
#include "histoscan/util/error.h"

namespace histoscan::model {

torch::Tensor CentreCropImpl::forward(const torch::Tensor& x) {
  const int64_t h = x.size(2), w = x.size(3);
  const int64_t sh = std::min(side_, h), sw = std::min(side_, w);
  return x.narrow(2, (h - sh) / 2, sh).narrow(3, (w - sw) / 2, sw);
}

BasicBlockImpl::BasicBlockImpl(int64_t in, int64_t out, int64_t stride) {
  namespace nn = torch::nn;
  body = register_module(
      "body",
      nn::Sequential(nn::Conv2d(nn::Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(false)), nn::BatchNorm2d(out),
                     nn::ReLU(), nn::Conv2d(nn::Conv2dOptions(out, out, 3).padding(1).bias(false)), nn::BatchNorm2d(out)));
  shortcut = register_module("shortcut", nn::Sequential());
  if (in != out || stride != 1) {
    shortcut->push_back(nn::Conv2d(nn::Conv2dOptions(in, out, 1).stride(stride).bias(false)));
    shortcut->push_back(nn::BatchNorm2d(out));
  }
}

torch::Tensor BasicBlockImpl::forward(const torch::Tensor& x) {
  auto y = body->forward(x);
  const auto& skip = shortcut->is_empty() ? x : shortcut->forward(x);
  // Without gradients (evaluation, validation) the sum and the ReLU go into body's output, a
  // tensor of its own: no new tensors (with fold_batchnorm's in-place ReLUs, resnet scored 8%
  // faster, docs/performance.md). With gradients autograd needs them out of place.
  if (!torch::GradMode::is_enabled() && y.scalar_type() == skip.scalar_type()) return y.add_(skip).relu_();
  return torch::relu(y + skip);
}

torch::nn::Sequential resnet(const ResNetOptions& o) {
  namespace nn = torch::nn;
  nn::Sequential net;
  if (o.input_norm == "channel")
    net->push_back(nn::InstanceNorm2d(nn::InstanceNorm2dOptions(3).affine(false).track_running_stats(false)));
  net->push_back(CentreCrop(o.crop));
  net->push_back(nn::Conv2d(nn::Conv2dOptions(3, o.width, 3).padding(1).bias(false)));
  net->push_back(nn::BatchNorm2d(o.width));
  net->push_back(nn::ReLU());
  int64_t in = o.width;
  for (int stage = 0; stage < 4; ++stage) {
    const int64_t out = o.width << stage;
    for (int64_t b = 0; b < o.blocks[static_cast<std::size_t>(stage)]; ++b) {
      net->push_back(BasicBlock(in, out, b == 0 ? 2 : 1));
      in = out;
    }
  }
  net->push_back(nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions(1)));
  net->push_back(nn::Flatten());
  net->push_back(Dropout(o.dropout));
  net->push_back(nn::Linear(in, 1));
  return net;
}

namespace {

// "1,1,1,2": four stages' block counts, each 1 to 4. False (blocks untouched) for anything else.
bool stage_blocks(const std::string& text, std::array<int64_t, 4>& blocks) {
  // Exactly "d,d,d,d": seven characters, digits 1 to 4 at the even places, commas between.
  if (text.size() != 2 * blocks.size() - 1) return false;
  std::array<int64_t, 4> parsed{};
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (i % 2 == 1) {
      if (text[i] != ',') return false;
    } else if (text[i] < '1' || text[i] > '4') {
      return false;
    } else {
      parsed[i / 2] = text[i] - '0';
    }
  }
  blocks = parsed;
  return true;
}

}  // namespace

torch::nn::Sequential resnet_from_options(const nlohmann::json& options) {
  ResNetOptions o;
  for (const auto& [key, value] : options.items()) {
    const bool integer = value.is_number_integer();
    if (key == "crop" && integer && value.get<int64_t>() >= 16 && value.get<int64_t>() <= 96) o.crop = value.get<int64_t>();
    else if (key == "width" && integer && value.get<int64_t>() >= 4 && value.get<int64_t>() <= 128)
      o.width = value.get<int64_t>();
    else if (key == "blocks" && integer && value.get<int64_t>() >= 1 && value.get<int64_t>() <= 4)
      o.blocks.fill(value.get<int64_t>());
    else if (key == "blocks" && value.is_string() && stage_blocks(value.get<std::string>(), o.blocks)) continue;
    else if (key == "dropout" && value.is_number() && value.get<double>() >= 0 && value.get<double>() < 1)
      o.dropout = value.get<double>();
    else if (key == "input_norm" && value.is_string() && (value == "image" || value == "channel"))
      o.input_norm = value.get<std::string>();
    else if (key == "symmetry" && value.is_string() && (value == "none" || value == "d4")) o.symmetry = value.get<std::string>();
    else
      throw InputError("model option " + key + "=" + value.dump() +
                       ": resnet takes crop (16 to 96), width (4 to 128), blocks (1 to 4, or four such for the stages: "
                       "1,1,1,2), dropout "
                       "(0 to below 1), input_norm (image or channel) and symmetry (none or d4)");
  }
  if (o.symmetry == "d4" && o.width % 8 != 0)
    throw InputError(
        "model option symmetry=\"d4\" needs width a multiple of 8 (each layer's channels are groups of 8 "
        "orientations); width is " +
        std::to_string(o.width));
  return resnet(o);
}

}  // namespace histoscan::model
