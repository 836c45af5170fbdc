#include "histoscan/model/seed_cnn.h"

#include <torch/nn.h>

#include "histoscan/model/dropout.h"
#include "histoscan/util/error.h"

namespace histoscan::model {

torch::nn::Sequential seed_cnn(double dropout, bool batchnorm) {
  namespace nn = torch::nn;
  nn::Sequential net;
  int64_t in = 3;
  for (int64_t f : {16, 32, 64, 128}) {
    for (int i = 0; i < 3; ++i) {
      net->push_back(nn::Conv2d(nn::Conv2dOptions(in, f, 3).padding(1)));
      net->push_back(nn::ReLU());
      if (batchnorm) net->push_back(nn::BatchNorm2d(f));
      in = f;
    }
    net->push_back(Dropout(dropout));
    net->push_back(nn::MaxPool2d(nn::MaxPool2dOptions(3)));
  }
  net->push_back(nn::Conv2d(nn::Conv2dOptions(128, 256, 3).padding(1)));
  net->push_back(nn::ReLU());
  if (batchnorm) net->push_back(nn::BatchNorm2d(256));
  net->push_back(nn::Flatten());
  net->push_back(nn::Linear(256, 1));
  return net;
}

torch::nn::Sequential seed_cnn_from_options(const nlohmann::json& options) {
  for (const auto& [key, value] : options.items()) {
    bool ok = (key == "dropout" && value.is_number() && value.get<double>() >= 0 && value.get<double>() < 1) ||
              (key == "batchnorm" && value.is_boolean());
    if (!ok)
      throw InputError("model option " + key + "=" + value.dump() +
                       ": seed-cnn takes dropout (0 to below 1) and batchnorm (true or false)");
  }
  return seed_cnn(options.value("dropout", 0.3), options.value("batchnorm", true));
}

}  // namespace histoscan::model
