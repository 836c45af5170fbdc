#include "histoscan/model/registry.h"

#include <map>
#include <mutex>

#include <torch/torch.h>

#include "histoscan/model/seed_cnn.h"
#include "histoscan/util/error.h"

namespace histoscan::model {

namespace {

std::map<std::string, ModelInfo>& registry() {
  static std::map<std::string, ModelInfo> models = [] {
    std::map<std::string, ModelInfo> m;
    m["seed-cnn"] = {"seed-cnn",
                     "the notebook's 13-layer CNN (786,977 parameters): 4 x (3 x [conv3x3-ReLU-BN], dropout 0.3, "
                     "maxpool 3), conv 256, dense 1",
                     [](const nlohmann::json& options) {
                       for (const auto& [key, value] : options.items()) {
                         bool ok = (key == "dropout" && value.is_number() && value.get<double>() >= 0 && value.get<double>() < 1) ||
                                   (key == "batchnorm" && value.is_boolean());
                         if (!ok)
                           throw InputError("model option " + key + "=" + value.dump() +
                                            ": seed-cnn takes dropout (0 to below 1) and batchnorm (true or false)");
                       }
                       return seed_cnn(options.value("dropout", 0.3), options.value("batchnorm", true));
                     }};
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

long long count_parameters(const torch::nn::Module& net) {
  long long n = 0;
  for (const auto& p : net.parameters())
    if (p.requires_grad()) n += p.numel();
  return n;
}

double flops_per_patch(torch::nn::Sequential& net, int64_t side) {
  torch::NoGradGuard no_grad;
  const bool was_training = net->is_training();
  net->eval();
  const auto params = net->parameters();
  auto h = torch::zeros({1, 3, side, side}, params.empty() ? torch::TensorOptions() : params.front().options());
  double macs = 0;
  for (auto it = net->begin(); it != net->end(); ++it) {
    h = it->forward(h);
    if (const auto* conv = it->ptr()->as<torch::nn::Conv2dImpl>()) {
      const auto& o = conv->options;
      const auto& k = *o.kernel_size();
      macs += double(h.numel()) * double(o.in_channels() / o.groups()) * double(k[0] * k[1]);
    } else if (const auto* linear = it->ptr()->as<torch::nn::LinearImpl>()) {
      macs += double(linear->options.in_features()) * double(linear->options.out_features());
    }
  }
  net->train(was_training);
  return 2.0 * macs;
}

}  // namespace histoscan::model
