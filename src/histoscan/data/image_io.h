#pragma once
// Decoding one patch file (TIFF, JPEG, PNG) into 96x96 RGB bytes.
#include <cstdint>
#include <filesystem>
#include <string>

namespace histoscan::data {

namespace fs = std::filesystem;

constexpr int kPatchSide = 96;
constexpr int kPatchChannels = 3;
constexpr std::size_t kPatchBytes = std::size_t(kPatchSide) * kPatchSide * kPatchChannels;  // 27,648

struct DecodeOptions {
  bool resize = false;  // resize other sizes to 96x96 instead of refusing them
};

// What a file holds, as found by decoding it (inspect).
struct ImageInfo {
  int width = 0, height = 0, channels = 0, bits = 0;
};

// Decodes `path` into out[0..kPatchBytes) as RGB, row-major HWC. Grayscale and RGBA are
// converted (a warning is printed once per run). Throws InputError naming the file and
// what to do when it cannot be read, is not an image, is not 8-bit, or is not 96x96
// (unless options.resize).
void decode_patch(const fs::path& path, std::uint8_t* out, const DecodeOptions& options = {});

// Decodes `path` and reports its size, channels and bit depth; throws as decode_patch.
ImageInfo probe_image(const fs::path& path);

// True for the extensions histoscan reads as patches: .tif .tiff .jpg .jpeg .png (any case).
bool is_image_file(const fs::path& path);

// Writes 96x96 RGB bytes as an uncompressed TIFF (Kaggle's format) or, by extension, PNG/JPEG.
void write_patch(const fs::path& path, const std::uint8_t* rgb);

// Silences OpenCV's own logging so a bad file gives our one-line message only.
void quiet_image_library();

}  // namespace histoscan::data
