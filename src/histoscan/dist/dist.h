#pragma once
// Data-parallel training across processes on PyTorch's own distributed engine (c10d, Gloo on
// CPU), launched as torchrun or Slurm launch PyTorch jobs. Tensors only cross this header;
// c10d stays in dist.cpp.
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

namespace histoscan::dist {

// Where this process stands in a job.
struct Launch {
  int rank = 0, world_size = 1, local_rank = 0, local_world_size = 1;
  std::string store;             // "tcp://HOST:PORT" (rank 0 serves it) or "file:///PATH" (a file every rank can reach)
  std::string describe() const;  // "rank 1 of 2 (tcp://127.0.0.1:29500)"
};

// The launch this process was started with: `url` (--dist-url: tcp://HOST:PORT or
// file:///PATH, with RANK and WORLD_SIZE from the environment), else torchrun's variables
// RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT, else Slurm's
// SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID (with MASTER_ADDR and MASTER_PORT). nullopt
// when none is set or WORLD_SIZE is 1: a plain single process. Throws InputError naming
// the variable or flag that is missing or out of range.
std::optional<Launch> launch_from_environment(const std::string& url);

// A lost or hung rank: the message says which operation, after how long, and what to do.
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// One process group over Gloo. Every collective throws dist::Error when another rank died,
// or did not answer within `timeout_s`, instead of waiting for ever.
class Group {
 public:
  Group(const Launch& launch, double timeout_s);
  ~Group();
  Group(const Group&) = delete;
  Group& operator=(const Group&) = delete;

  int rank() const { return launch_.rank; }
  int size() const { return launch_.world_size; }
  const Launch& launch() const { return launch_; }

  // Sums each tensor (CPU) over all ranks, in place. Tensors of one dtype travel as one
  // flat buffer (one collective per dtype).
  void allreduce_sum(std::vector<at::Tensor>& tensors, const char* what);
  // The largest value over all ranks, in place.
  void allreduce_max(at::Tensor& tensor, const char* what);
  // Rank `root`'s values to every rank, in place.
  void broadcast(std::vector<at::Tensor>& tensors, int root, const char* what);
  // Every rank's `tensor` (same shape everywhere), in rank order: size() x tensor's shape.
  at::Tensor allgather(const at::Tensor& tensor, const char* what);
  // True on every rank when `ok` is true on every rank: ranks agree to go on or stop together.
  bool all_ok(bool ok, const char* what);
  // Adds `amount` to the job's counter `key` in the c10d store (created at 0) and returns the
  // new value: a shared queue index, each value handed to exactly one caller.
  std::int64_t counter_add(const std::string& key, std::int64_t amount);

 private:
  struct Impl;
  Launch launch_;
  double timeout_s_;
  std::unique_ptr<Impl> impl_;
};

// The rows [begin, end) of `n` that rank `rank` of `world` takes: near-equal contiguous shares,
// the first n % world ranks one row more.
std::pair<std::size_t, std::size_t> shard(std::size_t n, int rank, int world);

// A TCP port on 127.0.0.1 that nobody listens on now: the kernel's pick for a socket bound to
// port 0, for a job on this machine (the bench's and the tests' 2-rank runs). Throws
// std::runtime_error when the kernel gives none.
int free_loopback_port();

}  // namespace histoscan::dist
