#pragma once
// The notebook's network, layer for layer, in PyTorch's nn.Sequential numbering.
#include <torch/nn/modules/container/sequential.h>
#include <nlohmann/json.hpp>

namespace histoscan::model {

// For f in 16, 32, 64, 128: 3 x [Conv 3x3 'same' -> ReLU -> BatchNorm], Dropout, MaxPool 3x3;
// then Conv 3x3 256 -> ReLU -> BatchNorm, Flatten, Linear(256, 1). Input N x 3 x 96 x 96,
// output N x 1 logits. 786,977 trainable parameters.
// batchnorm false leaves the BatchNorm layers out (a network whose arithmetic does not depend
// on how a batch is split, for data-parallel tests).
torch::nn::Sequential seed_cnn(double dropout = 0.3, bool batchnorm = true);

// The network from its model options (--model-option, a checkpoint's model_options): the
// registry's factory. Throws InputError naming an option it does not take or a value out of range.
torch::nn::Sequential seed_cnn_from_options(const nlohmann::json& options);

}  // namespace histoscan::model
