#pragma once
// A small residual network for 96x96 patches, sized for a CPU's hour of training.
//
// PCam's label says whether the centre 32x32 pixels hold tumour; the rest of the patch is
// context. The network first keeps the centre crop x crop pixels (CentreCrop), so every FLOP
// goes where the label is decided, then: a 3x3 stem of `width` channels, four stages of
// `blocks` basic residual blocks (He et al., 2016; the first of each stage halves the side and,
// past the first stage, doubles the channels), global average pooling, dropout and one linear
// logit. Input N x 3 x 96 x 96 (standardized), output N x 1 logits. With input_norm "channel" a
// first layer standardizes each image's R, G and B apart (InstanceNorm2d without parameters,
// over the whole 96 x 96 before the crop): a patch whose stain shifts or scales a channel looks
// the same to the rest of the network, in training and in every use of the checkpoint.
#include <array>
#include <cstdint>
#include <string>

#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <nlohmann/json.hpp>

namespace histoscan::model {

// Keeps the centre side x side pixels of an N x C x H x W input (all of it when side is
// at least H and W). No parameters.
class CentreCropImpl : public torch::nn::Module {
 public:
  explicit CentreCropImpl(int64_t side) : side_(side) {}
  torch::Tensor forward(const torch::Tensor& x);
  int64_t side() const { return side_; }

 private:
  int64_t side_;
};
TORCH_MODULE(CentreCrop);

// relu(body(x) + shortcut(x)): body is conv3x3 (stride) - BN - ReLU - conv3x3 - BN; shortcut
// is the identity, or conv1x1 (stride) - BN where the shape changes. Parameters are named
// body.N.* and shortcut.N.*. Without gradients the sum and ReLU are done in place in body's
// output (the result is the same).
class BasicBlockImpl : public torch::nn::Module {
 public:
  BasicBlockImpl(int64_t in, int64_t out, int64_t stride);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Sequential body, shortcut;  // shortcut is empty for the identity
};
TORCH_MODULE(BasicBlock);

struct ResNetOptions {
  int64_t crop = 64;   // centre pixels kept (96: the whole patch)
  int64_t width = 32;  // channels of the stem and first stage; doubled at each later stage
  // Basic blocks in each of the four stages (sides 48, 24, 12 and 6 at crop 96). The option
  // blocks=N gives every stage N; blocks=1,1,1,2 (a string) one stage each.
  std::array<int64_t, 4> blocks = {1, 1, 1, 1};
  double dropout = 0.2;  // before the linear layer
  // "image": the input as preprocessed (each image standardized over all its channels);
  // "channel": each channel of each image standardized again apart (see above).
  std::string input_norm = "image";
  // "d4": trained with its weights tied so that it is equivariant to quarter turns and mirror
  // images (model/symmetry.h; width a multiple of 8). The network built is the same either
  // way: the option tells train to tie it, and a checkpoint records how it was trained.
  std::string symmetry = "none";
};

torch::nn::Sequential resnet(const ResNetOptions& options = {});

// The network from its model options (--model-option, a checkpoint's model_options): the
// registry's factory. Throws InputError naming an option it does not take or a value out of range.
torch::nn::Sequential resnet_from_options(const nlohmann::json& options);

}  // namespace histoscan::model
