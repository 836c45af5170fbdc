// libFuzzer target: read_labels_csv and read_groups_csv (libfccp) on arbitrary bytes saved as
// a CSV file. InputError is the expected rejection; anything else is a finding.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "histoscan/data/labels_csv.h"
#include "histoscan/util/error.h"

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
  g_path = "/dev/shm/histoscan-fuzz-labels-" + std::to_string(getpid()) + ".csv";
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  write_file(g_path, data, size);
  // One read per input: each allocates libfccp's 48 MB buffer, which ASan poisons (about
  // 5 ms). A quarter of the inputs, by size, go to the groups reader (same parser, other
  // columns, string values).
  try {
    if (size % 4 == 0) histoscan::data::read_groups_csv(g_path);
    else histoscan::data::read_labels_csv(g_path);
  } catch (const histoscan::InputError&) {
  }
  std::remove(g_path.c_str());
  return 0;
}
