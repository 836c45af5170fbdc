#include "histoscan/model/dropout.h"

#include <ostream>

#include <torch/torch.h>

#include "histoscan/model/kernels.h"

namespace histoscan::model {

torch::Tensor DropoutImpl::forward(const torch::Tensor& x) {
  if (!is_training() || p == 0) return x;
  if (!x.device().is_cpu() || !x.is_floating_point()) return torch::dropout(x, p, /*train=*/true);
  auto mask = bernoulli_mask(x, 1.0 - p);
  // Under bfloat16 autocast the mask in x's type, as torch::dropout scales it.
  return x * (x.scalar_type() == torch::kFloat32 ? mask : mask.to(x.scalar_type()));
}

void DropoutImpl::pretty_print(std::ostream& stream) const { stream << "histoscan::model::Dropout(p=" << p << ")"; }

}  // namespace histoscan::model
