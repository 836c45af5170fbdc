#pragma once
// Dropout whose mask costs one pass on the CPU (model::bernoulli_mask) instead of LibTorch
// 1.13's bernoulli_, which draws one element at a time on one thread: in seed-cnn's float32
// training step that sampler alone took 14% of one thread's time (docs/performance.md). On a
// GPU it is torch::dropout. No parameters, so checkpoints are as nn::Dropout's.
#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>

namespace histoscan::model {

class DropoutImpl : public torch::nn::Cloneable<DropoutImpl> {
 public:
  explicit DropoutImpl(double p = 0.5) : p(p) {}
  void reset() override {}
  // In training, each element zeroed with probability p and the rest scaled by 1 / (1 - p);
  // in eval mode (or p = 0), x itself.
  torch::Tensor forward(const torch::Tensor& x);
  void pretty_print(std::ostream& stream) const override;
  double p;
};
TORCH_MODULE(Dropout);

}  // namespace histoscan::model
