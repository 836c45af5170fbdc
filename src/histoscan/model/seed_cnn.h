#pragma once
// The notebook's network, layer for layer, in PyTorch's nn.Sequential numbering.
#include <torch/nn/modules/container/sequential.h>

namespace histoscan::model {

// For f in 16, 32, 64, 128: 3 x [Conv 3x3 'same' -> ReLU -> BatchNorm], Dropout, MaxPool 3x3;
// then Conv 3x3 256 -> ReLU -> BatchNorm, Flatten, Linear(256, 1). Input N x 3 x 96 x 96,
// output N x 1 logits. 786,977 trainable parameters.
// batchnorm false leaves the BatchNorm layers out (a network whose arithmetic does not depend
// on how a batch is split, for data-parallel tests).
torch::nn::Sequential seed_cnn(double dropout = 0.3, bool batchnorm = true);

}  // namespace histoscan::model
