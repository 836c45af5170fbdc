// libFuzzer target: load_checkpoint on arbitrary bytes saved as a .pt file. InputError is
// the expected rejection; anything else is a finding. What crashes LibTorch inside
// load_checkpoint's child-process parse is contained there and is an InputError. LibTorch
// is not instrumented, so coverage guidance comes from histoscan's code only.
//
// With HISTOSCAN_FUZZ_WRITE_SEED=FILE set, the binary instead writes a complete seed-cnn
// checkpoint (3 MB, too big to keep in fuzz/corpus) to FILE and exits: run_fuzzers.sh
// adds it to the working corpus.
#include <sanitizer/common_interface_defs.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <c10/util/Logging.h>
#include <torch/torch.h>

#include "histoscan/model/checkpoint.h"
#include "histoscan/model/registry.h"
#include "histoscan/util/error.h"
#include "histoscan/util/isolate.h"

namespace {

std::string g_path;

void write_file(const std::string& path, const std::uint8_t* data, std::size_t size) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || (size && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0) {
    std::perror(path.c_str());
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  torch::set_num_threads(1);  // one core: the machine is shared
  // Each c10::Error LibTorch throws on a damaged file symbolises its own backtrace
  // (backtrace_symbols, dladdr per frame): 30% of the time per input, for a text that
  // load_checkpoint drops. What is parsed, and how, is unchanged.
  c10::SetStackTraceFetcher([] { return std::string(); });
  if (const char* seed = std::getenv("HISTOSCAN_FUZZ_WRITE_SEED")) {
    torch::manual_seed(0);
    auto net = histoscan::model::make_model("seed-cnn");
    histoscan::model::save_checkpoint(seed, net,
                                      {{"model", "seed-cnn"}, {"model_options", {{"dropout", 0.3}}}, {"threshold", 0.5}});
    std::exit(0);
  }
  // load_checkpoint parses each file in a child process first (LibTorch 1.13 crashes on some
  // damaged TorchScript). A crash there is contained and becomes an InputError; the child must
  // not record it as this target's finding, so it drops libFuzzer's death callback.
  histoscan::set_probe_child_hook([] {
    __sanitizer_set_death_callback(nullptr);
    // Its reports go to its stderr (/dev/null once the helper has started), never to the
    // log_path files that run_fuzzers.sh keeps for this process's own findings.
    __sanitizer_set_report_fd(reinterpret_cast<void*>(2));
  });
  // Start the probe helper now, while this process has one thread. libFuzzer starts its RSS
  // thread after this function; a fork while that thread starts up can copy ASan's allocator
  // lock held (clang 14's ASan takes no locks around fork), and the helper then waits on it
  // for ever: caught under -fork=1, where every job forks its helper at its first input
  // (gdb: FutexWait in SizeClassAllocator64::GetFromAllocator, one thread), as a timeout.
  histoscan::probe_in_child([](const std::string&) {}, "", 64);
  g_path = "/dev/shm/histoscan-fuzz-checkpoint-" + std::to_string(getpid()) + ".pt";
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  write_file(g_path, data, size);
  try {
    histoscan::model::load_checkpoint(g_path);
  } catch (const histoscan::InputError&) {
  }
  std::remove(g_path.c_str());
  return 0;
}
