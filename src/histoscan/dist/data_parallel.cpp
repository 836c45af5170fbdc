#include "histoscan/dist/data_parallel.h"

#include <stdexcept>

#include <torch/torch.h>

namespace histoscan::dist {

GradientReducer::GradientReducer(const torch::nn::Sequential& net) {
  constexpr std::int64_t kBucketBytes = 25 << 20;
  for (auto& p : net->parameters()) {
    if (!p.requires_grad()) continue;
    if (buckets_.empty() || (buckets_.back().size > 0 && (buckets_.back().size + p.numel()) * 4 > kBucketBytes))
      buckets_.emplace_back();
    auto& bucket = buckets_.back();
    bucket.params.push_back(p);
    bucket.offsets.push_back(bucket.size);
    bucket.size += p.numel();
  }
  for (auto& bucket : buckets_) bucket.flat = torch::zeros({bucket.size}, torch::kFloat32);
}

void GradientReducer::allreduce(Group& group) {
  for (auto& bucket : buckets_) {
    for (std::size_t k = 0; k < bucket.params.size(); ++k) {
      auto& p = bucket.params[k];
      if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
      bucket.flat.narrow(0, bucket.offsets[k], p.numel()).copy_(p.grad().reshape({-1}));
    }
    std::vector<torch::Tensor> one{bucket.flat};
    group.allreduce_sum(one, "averaging gradients");
  }
  torch::NoGradGuard no_grad;
  for (auto& bucket : buckets_)
    for (std::size_t k = 0; k < bucket.params.size(); ++k) {
      auto& p = bucket.params[k];
      p.mutable_grad().copy_(bucket.flat.narrow(0, bucket.offsets[k], p.numel()).view(p.sizes()));
    }
}

void broadcast_weights(const torch::nn::Sequential& net, Group& group) {
  std::vector<torch::Tensor> all;
  for (auto& p : net->parameters()) all.push_back(p.data());
  for (auto& b : net->buffers()) all.push_back(b);
  group.broadcast(all, 0, "broadcasting the initial weights");
}

void broadcast_buffers(const torch::nn::Sequential& net, Group& group) {
  std::vector<torch::Tensor> buffers;
  for (auto& b : net->buffers()) buffers.push_back(b);
  if (!buffers.empty()) group.broadcast(buffers, 0, "broadcasting BatchNorm statistics");
}

std::vector<float> gather_shards(const std::vector<float>& mine, std::size_t n, Group& group) {
  const auto widest = static_cast<std::int64_t>(shard(n, 0, group.size()).second);  // rank 0's share is the largest
  auto padded = torch::zeros({widest}, torch::kFloat32);
  if (!mine.empty())
    padded.narrow(0, 0, static_cast<std::int64_t>(mine.size()))
        .copy_(torch::from_blob(const_cast<float*>(mine.data()), {static_cast<std::int64_t>(mine.size())}));
  auto all = group.allgather(padded, "gathering validation scores");
  std::vector<float> out;
  out.reserve(n);
  for (int r = 0; r < group.size(); ++r) {
    auto [b, e] = shard(n, r, group.size());
    const float* row = all[r].contiguous().data_ptr<float>();
    out.insert(out.end(), row, row + (e - b));
  }
  return out;
}

void check_ranks_agree(const torch::nn::Sequential& net, Group& group, const std::string& where) {
  std::vector<torch::Tensor> parts;
  for (auto& p : net->parameters()) parts.push_back(p.detach().reshape({-1}).to(torch::kFloat64));
  auto mine = torch::cat(parts);
  auto all = group.allgather(mine, "comparing weights across ranks");
  const double diff = (all - all[0]).abs().max().item<double>();
  if (diff != 0)
    throw std::runtime_error("rank " + std::to_string(group.rank()) + ": the ranks' weights differ after " + where +
                             " (by up to " + std::to_string(diff) + ")");
}

}  // namespace histoscan::dist
