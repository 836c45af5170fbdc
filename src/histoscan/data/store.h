#pragma once
// The decoded patches of a run: one contiguous uint8 buffer (N x 96 x 96 x 3, RGB), decoded
// once on all cores; epochs read memory, never files.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "histoscan/data/image_io.h"
#include "histoscan/data/source.h"

namespace histoscan::data {

struct PatchStore {
  std::vector<std::string> ids;
  std::vector<int> labels;           // -1 where unknown
  std::vector<std::uint8_t> pixels;  // size() * kPatchBytes

  std::size_t size() const { return ids.size(); }
  const std::uint8_t* image(std::size_t i) const { return pixels.data() + i * kPatchBytes; }
};

struct LoadOptions {
  int threads = 0;  // decode threads; 0: all cores
  DecodeOptions decode;
  bool skip_bad = false;  // drop unreadable images (listed in `skipped`) instead of failing
  bool progress = true;   // a progress bar on a terminal
};

struct SkippedFile {
  std::string id;
  fs::path path;
  std::string reason;
};

// Decodes entries `rows` of `index` (in that order) into a store. Throws InputError for
// the first unreadable image unless options.skip_bad, which records it in *skipped.
PatchStore load_patches(const PatchIndex& index, const std::vector<std::size_t>& rows, const LoadOptions& options = {},
                        std::vector<SkippedFile>* skipped = nullptr);

// All entries of `index`.
PatchStore load_all_patches(const PatchIndex& index, const LoadOptions& options = {},
                            std::vector<SkippedFile>* skipped = nullptr);

// Writes `store` atomically in PCam's HDF5 layout (x, y) plus `ids`: `histoscan pack`.
void write_packed(const PatchStore& store, const fs::path& out);

// Writes skipped files as CSV (id,path,reason) atomically.
void write_skipped_csv(const std::vector<SkippedFile>& skipped, const fs::path& out);

}  // namespace histoscan::data
