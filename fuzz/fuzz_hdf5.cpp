// libFuzzer target: index_source on an arbitrary .h5 file (PCam layout or packed store:
// x, y, ids), then reading the pixels of its first and last rows as training would. What
// crashes HDF5 itself inside index_source's probe (a helper process) is contained there and
// the parent gets an InputError; everything in this process, histoscan's code and HDF5
// alike, is checked as usual.
// InputError is the expected rejection; anything else is a finding, and so is an HDF5 object
// (file, dataset, dataspace, type) that histoscan leaves open.
#include <hdf5.h>
#include <sanitizer/common_interface_defs.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "histoscan/data/hdf5_io.h"
#include "histoscan/data/image_io.h"
#include "histoscan/data/source.h"
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
  // index_source probes each HDF5 file in a child process first (HDF5 1.10 crashes on some
  // damaged metadata). A crash there is contained and becomes an InputError; the child must
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
  // Not named *_x.h5, so the file is read as a packed store: x, y and ids all from it.
  g_path = "/dev/shm/histoscan-fuzz-hdf5-" + std::to_string(getpid()) + ".h5";
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  write_file(g_path, data, size);
  try {
    histoscan::data::SourceOptions options;
    options.require_labels = false;  // predict and pack read unlabeled stores too
    auto index = histoscan::data::index_source(g_path, options);
    std::vector<std::size_t> rows{0};
    if (index.entries.size() > 1) rows.push_back(index.entries.size() - 1);
    std::vector<std::uint8_t> pixels(rows.size() * histoscan::data::kPatchBytes);
    histoscan::data::h5_read_patches(g_path, rows, pixels.data());
  } catch (const histoscan::InputError&) {
  }
  // An identifier left open would also make the next input (same path) read stale state.
  if (H5Fget_obj_count(static_cast<hid_t>(H5F_OBJ_ALL), H5F_OBJ_ALL) != 0) {
    std::fprintf(stderr, "HDF5 objects left open after reading %s\n", g_path.c_str());
    std::abort();
  }
  std::remove(g_path.c_str());
  return 0;
}
