#include "histoscan/model/registry.h"

#include <map>
#include <mutex>

#include <torch/torch.h>

#include "histoscan/model/resnet.h"
#include "histoscan/model/seed_cnn.h"
#include "histoscan/util/error.h"

namespace histoscan::model {

namespace {

// The networks by name. Adding one to histoscan: its builder in its own file (NAME_from_options,
// which checks the options it takes) and a line here; the CLI, checkpoints and export need no
// change. A program that links the library adds its own with register_model.
std::map<std::string, ModelInfo>& registry() {
  static std::map<std::string, ModelInfo> models = [] {
    std::map<std::string, ModelInfo> m;
    m["seed-cnn"] = {"seed-cnn",
                     "the notebook's 13-layer CNN (786,977 parameters): 4 x (3 x [conv3x3-ReLU-BN], dropout 0.3, "
                     "maxpool 3), conv 256, dense 1",
                     seed_cnn_from_options};
    m["resnet"] = {"resnet",
                   "a small residual network on the centre of the patch: centre crop 64, conv3x3 32, 4 stages of "
                   "basic blocks (32, 64, 128, 256 channels, each halving the side), average pool, dropout 0.2, dense 1",
                   resnet_from_options};
    return m;
  }();
  return models;
}

std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}

}  // namespace

void register_model(ModelInfo info) {
  std::lock_guard<std::mutex> lock(registry_mutex());
  auto name = info.name;
  if (!registry().emplace(name, std::move(info)).second) throw std::logic_error("model " + name + " is registered twice");
}

torch::nn::Sequential make_model(const std::string& name, const nlohmann::json& options) {
  Factory factory;
  {
    std::lock_guard<std::mutex> lock(registry_mutex());
    auto it = registry().find(name);
    if (it == registry().end()) {
      std::string known;
      for (const auto& [n, info] : registry()) known += (known.empty() ? "" : ", ") + n;
      throw InputError("unknown model '" + name + "'; known models: " + known);
    }
    factory = it->second.factory;
  }
  return factory(options.is_null() ? nlohmann::json::object() : options);
}

std::vector<ModelInfo> list_models() {
  std::lock_guard<std::mutex> lock(registry_mutex());
  std::vector<ModelInfo> out;
  for (const auto& [name, info] : registry()) out.push_back(info);
  return out;
}

void use_channels_last(torch::nn::Module& net) {
  torch::NoGradGuard guard;
  for (auto& p : net.parameters())
    if (p.dim() == 4) p.set_data(p.data().contiguous(torch::MemoryFormat::ChannelsLast));
}

bool has_unsafe_channels_last_gradient(torch::nn::Module& net) {
  for (const auto& m : net.modules(/*include_self=*/false))
    if (const auto* conv = m->as<torch::nn::Conv2d>()) {
      const auto& o = conv->options;
      const bool one_by_one = (*o.kernel_size())[0] == 1 && (*o.kernel_size())[1] == 1;
      const bool strided = (*o.stride())[0] > 1 || (*o.stride())[1] > 1;
      if (one_by_one && strided && o.in_channels() < 16) return true;
    }
  return false;
}

long long count_parameters(const torch::nn::Module& net) {
  long long n = 0;
  for (const auto& p : net.parameters())
    if (p.requires_grad()) n += p.numel();
  return n;
}

namespace {

torch::Tensor count_macs(torch::nn::SequentialImpl& seq, const torch::Tensor& h, double& macs);

// Runs `layer` (an entry of a Sequential) on h, adding its convolutions' and linear layers'
// multiply-accumulates to macs (inside nested Sequentials and residual blocks too).
torch::Tensor count_macs(torch::nn::AnyModule& layer, const torch::Tensor& h, double& macs) {
  const auto module = layer.ptr();
  if (auto* seq = module->as<torch::nn::SequentialImpl>()) return count_macs(*seq, h, macs);
  if (auto* block = module->as<BasicBlockImpl>()) {
    count_macs(*block->body, h, macs);
    if (!block->shortcut->is_empty()) count_macs(*block->shortcut, h, macs);
    return block->forward(h);
  }
  auto out = layer.forward(h);
  if (const auto* conv = module->as<torch::nn::Conv2dImpl>()) {
    const auto& o = conv->options;
    const auto& k = *o.kernel_size();
    macs += double(out.numel()) * double(o.in_channels()) / double(o.groups()) * double(k[0] * k[1]);
  } else if (const auto* linear = module->as<torch::nn::LinearImpl>()) {
    macs += double(linear->options.in_features()) * double(linear->options.out_features());
  }
  return out;
}

torch::Tensor count_macs(torch::nn::SequentialImpl& seq, const torch::Tensor& h, double& macs) {
  auto out = h;
  for (auto it = seq.begin(); it != seq.end(); ++it) out = count_macs(*it, out, macs);
  return out;
}

}  // namespace

double flops_per_patch(torch::nn::Sequential& net, int64_t side) {
  torch::NoGradGuard no_grad;
  const bool was_training = net->is_training();
  net->eval();
  const auto params = net->parameters();
  double macs = 0;
  count_macs(*net, torch::zeros({1, 3, side, side}, params.empty() ? torch::TensorOptions() : params.front().options()), macs);
  net->train(was_training);
  return 2.0 * macs;
}

}  // namespace histoscan::model
