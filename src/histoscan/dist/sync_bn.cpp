#include "histoscan/dist/sync_bn.h"

#include <torch/torch.h>

#include "histoscan/dist/dist.h"

namespace histoscan::dist {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

// y = (x - mean) / sqrt(var + eps) * weight + bias with mean and var over every rank's
// batch; the backward pass all-reduces the two per-channel sums the input gradient needs.
// The weight and bias gradients stay local: the trainer averages them with the others.
struct SyncBatchNormFn : torch::autograd::Function<SyncBatchNormFn> {
  // The signature autograd::Function::apply calls. NOLINTBEGIN(performance-unnecessary-value-param)
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor x, torch::Tensor weight, torch::Tensor bias,
                               torch::Tensor running_mean, torch::Tensor running_var, double eps, double momentum,
                               int64_t group_address) {  // NOLINTEND(performance-unnecessary-value-param)
    auto* group = reinterpret_cast<Group*>(group_address);
    const int64_t c = x.size(1);
    auto xd = x.to(torch::kFloat64);
    std::vector<torch::Tensor> sums{torch::cat(
        {xd.sum({0, 2, 3}), (xd * xd).sum({0, 2, 3}), torch::full({1}, double(x.numel()) / double(c), torch::kFloat64)})};
    group->allreduce_sum(sums, "synchronising BatchNorm statistics");
    const double count = sums[0][2 * c].item<double>();
    auto mean = sums[0].narrow(0, 0, c) / count;
    auto var = (sums[0].narrow(0, c, c) / count - mean * mean).clamp_min(0);
    {
      torch::NoGradGuard no_grad;
      running_mean.mul_(1 - momentum).add_(mean.to(running_mean.scalar_type()), momentum);
      running_var.mul_(1 - momentum).add_((var * (count / std::max(count - 1, 1.0))).to(running_var.scalar_type()), momentum);
    }
    auto mean_f = mean.to(x.scalar_type()).view({1, c, 1, 1});
    auto invstd = (var + eps).rsqrt().to(x.scalar_type()).view({1, c, 1, 1});
    auto xhat = (x - mean_f) * invstd;
    ctx->save_for_backward({xhat, invstd, weight});
    ctx->saved_data["group"] = group_address;
    ctx->saved_data["count"] = count;
    return xhat * weight.view({1, c, 1, 1}) + bias.view({1, c, 1, 1});
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    auto saved = ctx->get_saved_variables();
    auto xhat = saved[0], invstd = saved[1], weight = saved[2];
    auto* group = reinterpret_cast<Group*>(ctx->saved_data["group"].toInt());
    const double count = ctx->saved_data["count"].toDouble();
    auto dy = grads[0];
    const int64_t c = dy.size(1);
    auto dbias = dy.sum({0, 2, 3});
    auto dweight = (dy * xhat).sum({0, 2, 3});
    std::vector<torch::Tensor> sums{torch::cat({dbias, dweight}).to(torch::kFloat64)};
    group->allreduce_sum(sums, "synchronising BatchNorm gradients");
    auto sum_dy = sums[0].narrow(0, 0, c).to(dy.scalar_type()).view({1, c, 1, 1});
    auto sum_dy_xhat = sums[0].narrow(0, c, c).to(dy.scalar_type()).view({1, c, 1, 1});
    auto dx = weight.view({1, c, 1, 1}) * invstd * (dy - sum_dy / count - xhat * sum_dy_xhat / count);
    return {dx, dweight, dbias, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

// Registered as BatchNorm2d's own parameters and buffers, under the same names.
class SyncBatchNorm2dImpl : public torch::nn::Module {
 public:
  SyncBatchNorm2dImpl(const torch::nn::BatchNorm2d& bn, Group& group) : group_(&group), options_(bn->options) {
    weight_ = register_parameter("weight", bn->weight);
    bias_ = register_parameter("bias", bn->bias);
    running_mean_ = register_buffer("running_mean", bn->running_mean);
    running_var_ = register_buffer("running_var", bn->running_var);
    num_batches_tracked_ = register_buffer("num_batches_tracked", bn->num_batches_tracked);
  }

  torch::Tensor forward(const torch::Tensor& x) {
    if (!is_training())
      return torch::batch_norm(x, weight_, bias_, running_mean_, running_var_, false, 0.0, options_.eps(), false);
    {
      torch::NoGradGuard no_grad;
      num_batches_tracked_.add_(1);
    }
    // Under --amp the statistics are still summed in float32, and the output goes back to
    // the input's type.
    auto y = SyncBatchNormFn::apply(x.to(torch::kFloat32), weight_, bias_, running_mean_, running_var_, options_.eps(),
                                    options_.momentum().value(), reinterpret_cast<int64_t>(group_));
    return y.to(x.scalar_type());
  }

 private:
  Group* group_;
  torch::nn::BatchNormOptions options_;
  torch::Tensor weight_, bias_, running_mean_, running_var_, num_batches_tracked_;
};
TORCH_MODULE(SyncBatchNorm2d);

}  // namespace

torch::nn::Sequential with_sync_batchnorm(const torch::nn::Sequential& net, Group& group) {
  torch::nn::Sequential out;
  for (const auto& any : *net) {
    if (auto bn = std::dynamic_pointer_cast<torch::nn::BatchNorm2dImpl>(any.ptr()))
      out->push_back(SyncBatchNorm2d(torch::nn::BatchNorm2d(bn), group));
    else out->push_back(any);
  }
  return out;
}

}  // namespace histoscan::dist
