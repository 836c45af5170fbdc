// libFuzzer target: decode_patch (image_io) on arbitrary bytes saved as a patch file.
// InputError is the expected rejection of a bad file; any other exception, crash, leak,
// hang or sanitizer report is a finding.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "histoscan/data/image_io.h"
#include "histoscan/util/error.h"

namespace {

std::string g_base;  // one file per process, so a second fuzzer process never collides

void write_file(const std::string& path, const std::uint8_t* data, std::size_t size) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || (size && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0) {
    std::perror(path.c_str());
    std::abort();  // the harness failing is not a finding in histoscan: stop loudly
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  histoscan::data::quiet_image_library();
  cv::setNumThreads(0);  // one core: the machine is shared
  g_base = "/dev/shm/histoscan-fuzz-image-" + std::to_string(getpid());
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // The extension matters (a .tif holding a JPEG is refused by name): cycle through the
  // three by size so every pairing of name and content occurs.
  static const char* const kExtensions[] = {".tif", ".jpg", ".png"};
  const std::string path = g_base + kExtensions[size % 3];
  write_file(path, data, size);
  std::vector<std::uint8_t> out(histoscan::data::kPatchBytes);
  histoscan::data::DecodeOptions options;
  options.resize = true;  // go past the size check into conversion and resizing
  try {
    histoscan::data::decode_patch(path, out.data(), options);
  } catch (const histoscan::InputError&) {
  }
  std::remove(path.c_str());
  return 0;
}
