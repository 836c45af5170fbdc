#include "histoscan/train/adam.h"

#include <cmath>
#include <memory>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include <torch/torch.h>

namespace histoscan::train {

namespace {

// The key of a parameter in the optimizer's state map: its TensorImpl's address, as a string
// in LibTorch 1.x (c10::guts::to_string) and as the pointer itself from 2.0 on.
template <typename Key>
Key state_key(const torch::Tensor& p) {
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream s;
    s << p.unsafeGetTensorImpl();
    return s.str();
  } else {
    return p.unsafeGetTensorImpl();
  }
}

}  // namespace

torch::Tensor MultiTensorAdam::step(LossClosure closure) {
  torch::NoGradGuard no_grad;
  torch::Tensor loss;
  if (closure) {
    at::AutoGradMode enable_grad(true);
    loss = closure();
  }
  using Key = typename std::decay_t<decltype(state_)>::key_type;
  for (auto& group : param_groups_) {
    auto& options = static_cast<torch::optim::AdamOptions&>(group.options());
    TORCH_CHECK(!options.amsgrad() && options.weight_decay() == 0,
                "MultiTensorAdam: amsgrad and weight_decay are not supported; use torch::optim::Adam");
    std::vector<torch::Tensor> params, grads, exp_avgs, exp_avg_sqs;
    int64_t step = -1;
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      TORCH_CHECK(!p.grad().is_sparse(), "Adam does not support sparse gradients");
      auto& slot = state_[state_key<Key>(p)];
      if (!slot) {
        auto s = std::make_unique<torch::optim::AdamParamState>();
        s->step(0);
        s->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        s->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        slot = std::move(s);
      }
      auto& s = static_cast<torch::optim::AdamParamState&>(*slot);
      s.step(s.step() + 1);
      TORCH_CHECK(step < 0 || step == s.step(), "MultiTensorAdam: parameters of one group at different steps");
      step = s.step();
      params.push_back(p);
      grads.push_back(p.grad());
      exp_avgs.push_back(s.exp_avg());
      exp_avg_sqs.push_back(s.exp_avg_sq());
    }
    if (params.empty()) continue;
    const double beta1 = std::get<0>(options.betas()), beta2 = std::get<1>(options.betas());
    const double bias_correction1 = 1 - std::pow(beta1, step);
    const double bias_correction2 = 1 - std::pow(beta2, step);
    // Adam's step, each line over all tensors at once:
    //   exp_avg.mul_(beta1).add_(grad, 1 - beta1); exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2);
    //   denom = (exp_avg_sq.sqrt() / sqrt(bias_correction2)).add_(eps); p.addcdiv_(exp_avg, denom, -lr / bias_correction1)
    at::_foreach_mul_(exp_avgs, beta1);
    at::_foreach_add_(exp_avgs, grads, 1 - beta1);
    at::_foreach_mul_(exp_avg_sqs, beta2);
    at::_foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2);
    auto denoms = at::_foreach_sqrt(exp_avg_sqs);
    at::_foreach_div_(denoms, std::sqrt(bias_correction2));
    at::_foreach_add_(denoms, options.eps());
    at::_foreach_addcdiv_(params, exp_avgs, denoms, -options.lr() / bias_correction1);
  }
  return loss;
}

}  // namespace histoscan::train
