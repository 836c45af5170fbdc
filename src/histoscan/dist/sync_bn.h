#pragma once
// BatchNorm whose batch statistics are those of the global batch across a data-parallel
// job's ranks (PyTorch's SyncBatchNorm), for `train --sync-bn`.
#include <torch/nn/modules/container/sequential.h>

namespace histoscan::dist {

class Group;

// A copy of `net` in which every BatchNorm2d is a synchronised one over `group`, sharing
// the original's parameters and buffers under the same names (so checkpoints are the same
// files, and load into the plain network). In eval mode it is plain BatchNorm.
torch::nn::Sequential with_sync_batchnorm(const torch::nn::Sequential& net, Group& group);

}  // namespace histoscan::dist
