#pragma once
// Adam whose step updates all parameters together (multi-tensor "foreach" operations): the
// same arithmetic as torch::optim::Adam, in about 8 operations a step instead of 7 per
// parameter tensor. On a GPU each operation is a kernel launch, and seed-cnn has 54 tensors.
#include <torch/optim/adam.h>

namespace histoscan::train {

// A torch::optim::Adam in every other respect: options, state (exp_avg, exp_avg_sq, step per
// parameter) and its serialization, so a resume.pt written by either loads into the other.
// Parameters whose gradient is undefined are skipped, as Adam skips them. amsgrad and
// weight_decay (unused by histoscan) are refused at the first step.
class MultiTensorAdam : public torch::optim::Adam {
 public:
  using torch::optim::Adam::Adam;
  torch::Tensor step(LossClosure closure = nullptr) override;
};

}  // namespace histoscan::train
