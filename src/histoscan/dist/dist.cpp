#include "histoscan/dist/dist.h"

#include <chrono>
#include <cstdlib>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <torch/torch.h>

// Gloo's own headers come with Debian's LibTorch (libgloo-dev) but not with a PyTorch wheel,
// whose ProcessGroupGloo.hpp includes them: such a build (the engine on a GPU machine) trains in
// one process and says so when launched as one of several.
#if !defined(HISTOSCAN_HAVE_GLOO) && __has_include(<gloo/algorithm.h>)
#define HISTOSCAN_HAVE_GLOO 1
#elif !defined(HISTOSCAN_HAVE_GLOO)
#define HISTOSCAN_HAVE_GLOO 0
#endif
#if HISTOSCAN_HAVE_GLOO
#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif

#include "histoscan/util/error.h"

namespace histoscan::dist {

namespace {

std::optional<std::string> env(const char* name) {
  const char* v = std::getenv(name);
  if (!v || !*v) return std::nullopt;
  return std::string(v);
}

int env_int(const char* name, const std::string& value, int lo, int hi) {
  try {
    std::size_t used = 0;
    int v = std::stoi(value, &used);
    if (used == value.size() && v >= lo && v <= hi) return v;
  } catch (const std::exception&) {
  }
  throw InputError(std::string(name) + "=" + value + " must be a whole number from " + std::to_string(lo) + " to " +
                   std::to_string(hi));
}

// The first line of a library's message, cut to a readable length.
[[maybe_unused]] std::string brief(const std::string& what) {
  std::string line = what.substr(0, what.find('\n'));
  return line.size() > 200 ? line.substr(0, 200) + "..." : line;
}

}  // namespace

std::string Launch::describe() const {
  return "rank " + std::to_string(rank) + " of " + std::to_string(world_size) + " (" + store + ")";
}

std::optional<Launch> launch_from_environment(const std::string& url) {
  auto rank = env("RANK"), world = env("WORLD_SIZE");
  const char* rank_name = "RANK";
  const char* world_name = "WORLD_SIZE";
  if (!rank && !world && env("SLURM_PROCID") && env("SLURM_NTASKS")) {
    rank = env("SLURM_PROCID"), world = env("SLURM_NTASKS");
    rank_name = "SLURM_PROCID", world_name = "SLURM_NTASKS";
  }
  if (!rank && !world) {
    if (!url.empty())
      throw InputError("--dist-url " + url + " needs RANK and WORLD_SIZE in the environment (as torchrun sets them)");
    return std::nullopt;
  }
  if (!rank || !world)
    throw InputError(std::string(rank ? world_name : rank_name) +
                     " is not set; a distributed run needs both RANK and WORLD_SIZE");
  Launch l;
  l.world_size = env_int(world_name, *world, 1, 1 << 16);
  l.rank = env_int(rank_name, *rank, 0, l.world_size - 1);
  if (l.world_size == 1) return std::nullopt;
  if (auto v = env("LOCAL_RANK")) l.local_rank = env_int("LOCAL_RANK", *v, 0, 1 << 16);
  else if (auto s = env("SLURM_LOCALID")) l.local_rank = env_int("SLURM_LOCALID", *s, 0, 1 << 16);
  if (auto v = env("LOCAL_WORLD_SIZE")) l.local_world_size = env_int("LOCAL_WORLD_SIZE", *v, 1, 1 << 16);
  else if (auto s = env("SLURM_NTASKS_PER_NODE")) l.local_world_size = env_int("SLURM_NTASKS_PER_NODE", *s, 1, 1 << 16);
  if (!url.empty() && url != "env://") {
    if (url.rfind("tcp://", 0) != 0 && url.rfind("file://", 0) != 0)
      throw InputError("--dist-url " + url + ": expected tcp://HOST:PORT, file:///PATH or env://");
    l.store = url;
    return l;
  }
  auto addr = env("MASTER_ADDR"), port = env("MASTER_PORT");
  if (!addr || !port)
    throw InputError(std::string(addr ? "MASTER_PORT" : "MASTER_ADDR") +
                     " is not set; give rank 0's address and a free port (MASTER_ADDR, MASTER_PORT), or --dist-url");
  env_int("MASTER_PORT", *port, 1, 65535);
  l.store = "tcp://" + *addr + ":" + *port;
  return l;
}

std::pair<std::size_t, std::size_t> shard(std::size_t n, int rank, int world) {
  const std::size_t w = static_cast<std::size_t>(world), r = static_cast<std::size_t>(rank);
  const std::size_t base = n / w, extra = n % w;
  const std::size_t begin = r * base + std::min(r, extra);
  return {begin, begin + base + (r < extra ? 1 : 0)};
}

int free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  const bool ok = fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  if (fd >= 0) ::close(fd);
  if (!ok) throw std::runtime_error("no free TCP port on 127.0.0.1");
  return ntohs(addr.sin_port);
}

#if HISTOSCAN_HAVE_GLOO

struct Group::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
};

Group::Group(const Launch& launch, double timeout_s) : launch_(launch), timeout_s_(timeout_s), impl_(std::make_unique<Impl>()) {
  const auto timeout = std::chrono::milliseconds(static_cast<long long>(timeout_s * 1000));
  std::string host;
  try {
    if (launch.store.rfind("file://", 0) == 0) {
      impl_->store = c10::make_intrusive<c10d::FileStore>(launch.store.substr(7), launch.world_size);
      impl_->store->setTimeout(timeout);
      host = "127.0.0.1";
    } else {
      std::string hp = launch.store.substr(6);
      auto colon = hp.rfind(':');
      if (colon == std::string::npos) throw InputError("--dist-url " + launch.store + ": expected tcp://HOST:PORT");
      host = hp.substr(0, colon);
      c10d::TCPStoreOptions opts;
      opts.port = static_cast<std::uint16_t>(env_int("the port", hp.substr(colon + 1), 1, 65535));
      opts.isServer = launch.rank == 0;
      opts.numWorkers = static_cast<std::size_t>(launch.world_size);
      opts.waitWorkers = true;
      opts.timeout = timeout;
      impl_->store = c10::make_intrusive<c10d::TCPStore>(host, opts);
    }
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    // The network device: GLOO_SOCKET_IFNAME as in PyTorch; loopback for a one-machine job.
    if (auto ifname = env("GLOO_SOCKET_IFNAME")) {
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(*ifname));
    } else if (host == "localhost" || host.rfind("127.", 0) == 0) {
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    } else {
      options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    options->threads = 1;
    auto prefixed = c10::make_intrusive<c10d::PrefixStore>("histoscan", impl_->store);
    impl_->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(prefixed, launch.rank, launch.world_size, options);
  } catch (const InputError&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(launch.describe() + ": cannot join the job within " + std::to_string(static_cast<int>(timeout_s)) + " s (" +
                brief(e.what()) + "); start every rank with the same address and port, rank 0 first or within --dist-timeout");
  }
}

Group::~Group() = default;

namespace {

template <class F>
void run_collective(const Launch& launch, double timeout_s, const char* what, F&& f) {
  try {
    auto work = f();
    work->wait();
  } catch (const std::exception& e) {
    throw Error(launch.describe() + ": " + what + " failed: another rank died or did not answer within " +
                std::to_string(static_cast<int>(timeout_s)) + " s (--dist-timeout) [" + brief(e.what()) + "]");
  }
}

}  // namespace

namespace {

// Gloo's collectives take one tensor per call here (a list means one per device): tensors of
// each dtype travel as one flat buffer, and come back into place.
template <class Op>
void flattened(std::vector<at::Tensor>& tensors, Op&& op) {
  std::vector<bool> done(tensors.size(), false);
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    if (done[i]) continue;
    std::vector<std::size_t> same;
    for (std::size_t j = i; j < tensors.size(); ++j)
      if (!done[j] && tensors[j].scalar_type() == tensors[i].scalar_type()) same.push_back(j), done[j] = true;
    std::vector<at::Tensor> parts;
    parts.reserve(same.size());
    for (auto j : same) parts.push_back(tensors[j].reshape({-1}));
    std::vector<at::Tensor> flat{same.size() == 1 && tensors[i].is_contiguous() ? tensors[i].view({-1}) : torch::cat(parts)};
    op(flat);
    if (same.size() == 1 && tensors[i].is_contiguous()) continue;  // reduced in place
    int64_t offset = 0;
    torch::NoGradGuard no_grad;
    for (auto j : same) {
      tensors[j].copy_(flat[0].narrow(0, offset, tensors[j].numel()).view(tensors[j].sizes()));
      offset += tensors[j].numel();
    }
  }
}

}  // namespace

void Group::allreduce_sum(std::vector<at::Tensor>& tensors, const char* what) {
  flattened(tensors, [&](std::vector<at::Tensor>& flat) {
    run_collective(launch_, timeout_s_, what, [&] { return impl_->pg->allreduce(flat, c10d::AllreduceOptions{}); });
  });
}

void Group::allreduce_max(at::Tensor& tensor, const char* what) {
  std::vector<at::Tensor> t{tensor};
  c10d::AllreduceOptions o;
  o.reduceOp = c10d::ReduceOp::MAX;
  run_collective(launch_, timeout_s_, what, [&] { return impl_->pg->allreduce(t, o); });
}

void Group::broadcast(std::vector<at::Tensor>& tensors, int root, const char* what) {
  c10d::BroadcastOptions o;
  o.rootRank = root;
  flattened(tensors, [&](std::vector<at::Tensor>& flat) {
    run_collective(launch_, timeout_s_, what, [&] { return impl_->pg->broadcast(flat, o); });
  });
}

at::Tensor Group::allgather(const at::Tensor& tensor, const char* what) {
  std::vector<at::Tensor> in{tensor.contiguous()};
  std::vector<std::vector<at::Tensor>> out(1);
  for (int r = 0; r < size(); ++r) out[0].push_back(torch::empty_like(in[0]));
  run_collective(launch_, timeout_s_, what, [&] { return impl_->pg->allgather(out, in); });
  return torch::stack(out[0]);
}

std::int64_t Group::counter_add(const std::string& key, std::int64_t amount) {
  try {
    return impl_->store->add(key, amount);
  } catch (const std::exception& e) {
    throw Error(launch_.describe() + ": the job's store did not answer (" + brief(e.what()) +
                "); rank 0 serves it: if rank 0 stopped, start the job again and finished work is kept");
  }
}

#else  // no Gloo

struct Group::Impl {};

namespace {
[[noreturn]] void no_gloo(const Launch& launch) {
  throw Error(launch.describe() +
              ": this build of histoscan has no Gloo (its LibTorch came without gloo's headers, as a "
              "PyTorch wheel does), so it trains in one process only; unset RANK and WORLD_SIZE, or build against a "
              "LibTorch that has them (Debian's libtorch-dev)");
}
}  // namespace

Group::Group(const Launch& launch, double timeout_s) : launch_(launch), timeout_s_(timeout_s) { no_gloo(launch); }
Group::~Group() = default;
void Group::allreduce_sum(std::vector<at::Tensor>&, const char*) { no_gloo(launch_); }
void Group::allreduce_max(at::Tensor&, const char*) { no_gloo(launch_); }
void Group::broadcast(std::vector<at::Tensor>&, int, const char*) { no_gloo(launch_); }
at::Tensor Group::allgather(const at::Tensor&, const char*) { no_gloo(launch_); }
std::int64_t Group::counter_add(const std::string&, std::int64_t) { no_gloo(launch_); }

#endif  // HISTOSCAN_HAVE_GLOO

bool Group::all_ok(bool ok, const char* what) {
  auto t = torch::tensor({ok ? 0 : 1}, torch::kInt32);
  allreduce_max(t, what);
  return t.item<int>() == 0;
}

}  // namespace histoscan::dist
