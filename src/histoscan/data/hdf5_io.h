#pragma once
// PatchCamelyon's HDF5 layout: dataset `x` (N x 96 x 96 x 3 uint8) and `y` (N x 1 x 1 x 1
// uint8), in one file or in PCam's pair `..._x.h5` / `..._y.h5`. histoscan's packed store is
// that layout in one file plus `ids` (N fixed-length strings).
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "histoscan/util/isolate.h"

namespace histoscan::data {

namespace fs = std::filesystem;

// True when `path` is an HDF5 file holding a dataset called `name`.
bool h5_has_dataset(const fs::path& path, const std::string& name);

// Number of patches in dataset `x` of `path`; throws InputError naming the file unless it is
// N x 96 x 96 x 3 of 8-bit unsigned integers.
std::size_t h5_count_patches(const fs::path& path);

// The labels in dataset `y` (N x 1 x 1 x 1, or N) of `path`; throws InputError unless each is 0 or 1.
std::vector<int> h5_read_labels(const fs::path& path);

// The strings of dataset `ids` of `path`.
std::vector<std::string> h5_read_ids(const fs::path& path);

// Copies rows `rows[k]` of `x` to out + k * 27,648 (any order, no duplicates needed).
void h5_read_patches(const fs::path& path, const std::vector<std::size_t>& rows, std::uint8_t* out);

// Writes n patches to `path`: x (unless pixels is null), y (when labels holds n labels,
// each 0 or 1) and ids (when ids holds n). Not atomic by itself.
void h5_write_packed(const fs::path& path, std::size_t n, const std::uint8_t* pixels, const std::vector<int>& labels,
                     const std::vector<std::string>& ids);

// Runs probe(arg) (reads of the HDF5 file `path`) in a helper process (util/isolate.h).
// HDF5 1.10 itself crashes on some damaged files' metadata (fuzz_hdf5 found segmentation
// faults inside its cache and heap code) before any check of ours can look at them; such a
// crash there becomes an InputError naming the file, and so does growth by over 1 GiB or no
// answer in 5 minutes. Returns when the probe finished, whether its reads succeeded or
// threw: the caller then makes the same reads safely (and meets the same errors, with their
// messages, itself).
void h5_probe_isolated(const fs::path& path, ProbeFn probe, const std::string& arg);

}  // namespace histoscan::data
