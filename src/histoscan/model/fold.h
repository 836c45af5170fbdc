#pragma once
// Inference-only rewrites of a trained network that compute the same function in fewer passes
// over the activations: every BatchNorm2d (in eval mode: a per-channel scale and shift from its
// running statistics) is folded into the layer before it.
#include <cstdint>

#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>

namespace histoscan::model {

// max(x, 0) * scale + shift per channel of an N x C x H x W input: a ReLU followed by an
// eval-mode BatchNorm2d (seed-cnn's order), in one pass over x on the CPU for float32 or
// bfloat16 NCHW or channels-last input (other input: the same through LibTorch's operations).
// No gradients. in_place: the result overwrites x where no gradient is recorded (fold_batchnorm
// sets it where x is a convolution's output, which nothing else reads).
class ReluAffineImpl : public torch::nn::Module {
 public:
  ReluAffineImpl(const torch::Tensor& scale, const torch::Tensor& shift, bool in_place = false);
  torch::Tensor forward(const torch::Tensor& x);
  // scale and shift stay float32 when the network changes type (model::to_bfloat16_for_inference
  // under --amp): the kernel computes in float32 from them for bfloat16 activations too.
  using torch::nn::Module::to;
  void to(torch::Dtype dtype, bool non_blocking = false) override;
  void to(torch::Device device, torch::Dtype dtype, bool non_blocking = false) override;
  torch::Tensor scale, shift;  // buffers, C values each
  bool in_place = false;
};
TORCH_MODULE(ReluAffine);

// Folds each BatchNorm2d of `net` into the layer before it and returns how many it folded:
//   Conv2d -> BatchNorm2d becomes one Conv2d (weights scaled per output channel, a bias added);
//   ReLU -> BatchNorm2d becomes one ReluAffine.
// A ReLU or ReluAffine right after a convolution then works in place on the convolution's
// output (a tensor nothing else reads): one pass over the activations and no new tensor.
// Looks into BasicBlocks (resnet's body and shortcut). A kept layer keeps its name, so the
// parameter names of the checkpoint still find it ("48.weight"); a folded BatchNorm's name is
// gone. The result differs from the original by float32 rounding only (the folded products are
// rounded once, not twice). For evaluation only: the network's BatchNorm running statistics
// and its trainable weights are replaced, so never call this on a network still being trained.
int fold_batchnorm(torch::nn::Sequential& net);

}  // namespace histoscan::model
