#pragma once
// What OpenCV hides when it decodes a TIFF: its bit depth, and whether a ".tif" is a TIFF.
#include <filesystem>
#include <vector>

namespace histoscan::data {

// Throws InputError naming `path` when a file named .tif/.tiff holds a JPEG or PNG (rename
// it), or holds a TIFF whose samples are not 8 bits (e.g. 1-bit black and white or 16-bit).
// Reads the TIFF's first directory from `bytes` with libtiff; other files pass unchecked.
void check_tiff(const std::filesystem::path& path, const std::vector<unsigned char>& bytes);

}  // namespace histoscan::data
