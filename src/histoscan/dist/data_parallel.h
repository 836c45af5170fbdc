#pragma once
// Data-parallel training's exchanges between ranks, as PyTorch's DistributedDataParallel makes
// them: gradients summed in buckets, rank 0's weights and BatchNorm statistics broadcast, each
// rank's share of the validation scores gathered, and (for tests) a bit-for-bit check that the
// ranks' weights agree. train::train_model calls them; nothing here knows the training loop.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>
#include <torch/nn/modules/container/sequential.h>

#include "histoscan/dist/dist.h"

namespace histoscan::dist {

// Sums the gradients of `net`'s trainable parameters over the ranks, in parameter order, in
// buckets of up to 25 MB (DDP's default): one all-reduce per bucket. A parameter without a
// gradient takes part as zeros.
class GradientReducer {
 public:
  explicit GradientReducer(const torch::nn::Sequential& net);
  void allreduce(Group& group);
  std::size_t buckets() const { return buckets_.size(); }

 private:
  struct Bucket {
    std::vector<at::Tensor> params;
    std::vector<std::int64_t> offsets;
    std::int64_t size = 0;
    at::Tensor flat;
  };
  std::vector<Bucket> buckets_;
};

// Rank 0's parameters and buffers, everyone's (the initial weights, as DDP's constructor).
void broadcast_weights(const torch::nn::Sequential& net, Group& group);

// Rank 0's buffers (BatchNorm's running statistics), everyone's (DDP's broadcast_buffers).
void broadcast_buffers(const torch::nn::Sequential& net, Group& group);

// The scores of rows [0, n) when each rank holds those of its shard(n, rank, size): all of them,
// in order, on every rank.
std::vector<float> gather_shards(const std::vector<float>& mine, std::size_t n, Group& group);

// Compares every rank's parameters with rank 0's, bit for bit; throws std::runtime_error naming
// `where` and the largest difference when they differ.
void check_ranks_agree(const torch::nn::Sequential& net, Group& group, const std::string& where);

}  // namespace histoscan::dist
