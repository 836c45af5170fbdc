#include "histoscan/data/hdf5_io.h"

#include <hdf5.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <stdexcept>

#include "histoscan/data/image_io.h"
#include "histoscan/util/error.h"
#include "histoscan/util/isolate.h"

namespace histoscan::data {

namespace {

// Owns one HDF5 identifier and closes it with the matching call.
class H5Id {
 public:
  H5Id(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  ~H5Id() {
    if (id_ >= 0) close_(id_);
  }
  H5Id(H5Id&& other) noexcept : id_(other.id_), close_(other.close_) { other.id_ = -1; }
  H5Id(const H5Id&) = delete;
  H5Id& operator=(const H5Id&) = delete;
  operator hid_t() const { return id_; }
  bool ok() const { return id_ >= 0; }

 private:
  hid_t id_;
  herr_t (*close_)(hid_t);
};

void silence_hdf5() {
  static bool done = [] {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    return true;
  }();
  (void)done;
}

H5Id open_file(const fs::path& path) {
  silence_hdf5();
  if (!fs::exists(path)) throw InputError(path.string() + " does not exist");
  if (H5Fis_hdf5(path.c_str()) <= 0)
    throw InputError(path.string() + ": not an HDF5 file; give a PCam .h5 file or a store written by 'histoscan pack'");
  H5Id f(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  if (!f.ok()) throw InputError(path.string() + ": cannot open the HDF5 file (damaged or unreadable)");
  return f;
}

H5Id open_dataset(hid_t file, const fs::path& path, const char* name) {
  if (H5Lexists(file, name, H5P_DEFAULT) <= 0)
    throw InputError(path.string() + ": no dataset '" + name + "'; PCam files hold 'x' (images) and 'y' (labels)");
  H5Id d(H5Dopen2(file, name, H5P_DEFAULT), H5Dclose);
  if (!d.ok()) throw InputError(path.string() + ": cannot open dataset '" + name + "'");
  return d;
}

std::vector<hsize_t> dims_of(hid_t dataset) {
  H5Id space(H5Dget_space(dataset), H5Sclose);
  int rank = H5Sget_simple_extent_ndims(space);
  std::vector<hsize_t> dims(rank > 0 ? rank : 0);
  if (rank > 0) H5Sget_simple_extent_dims(space, dims.data(), nullptr);
  return dims;
}

bool is_uint8(hid_t dataset) {
  H5Id type(H5Dget_type(dataset), H5Tclose);
  return H5Tget_class(type) == H5T_INTEGER && H5Tget_size(type) == 1 && H5Tget_sign(type) == H5T_SGN_NONE;
}

std::string dims_text(const std::vector<hsize_t>& d) {
  std::string s;
  for (std::size_t i = 0; i < d.size(); ++i) s += (i ? "x" : "") + std::to_string(d[i]);
  return s.empty() ? "a scalar" : s;
}

// Dimensions come from a dataset's header alone, so a damaged or half-written file can claim
// far more rows than it stores (found by fuzz_hdf5: allocations and loops sized by the claim).
// Contiguous and compact data must fill exactly elements x element size; chunked data must
// have every chunk, since a missing one reads as zeros. External and virtual data: left to HDF5.
void require_stored(hid_t dataset, const fs::path& path, const char* name, const std::vector<hsize_t>& d,
                    std::size_t element_size) {
  H5Id plist(H5Dget_create_plist(dataset), H5Pclose);
  H5D_layout_t layout = H5Pget_layout(plist);
  if (H5Pget_external_count(plist) > 0) return;
  std::string stored;
  if (layout == H5D_CHUNKED) {
    std::vector<hsize_t> chunk(d.size()), maxdims(d.size());
    bool overflow = H5Pget_chunk(plist, static_cast<int>(d.size()), chunk.data()) != static_cast<int>(d.size());
    // A chunk wider than the dataset can ever grow (found by fuzz_hdf5: HDF5 1.10 then copies
    // past its buffers) or over HDF5's 4 GiB limit on a chunk.
    H5Id space(H5Dget_space(dataset), H5Sclose);
    H5Sget_simple_extent_dims(space, nullptr, maxdims.data());
    hsize_t chunk_bytes = element_size;
    for (std::size_t i = 0; i < d.size() && !overflow; ++i) {
      bool beyond = maxdims[i] != H5S_UNLIMITED && chunk[i] > std::max(d[i], maxdims[i]);
      overflow = beyond || __builtin_mul_overflow(chunk_bytes, chunk[i], &chunk_bytes) || chunk_bytes >= (hsize_t(1) << 32);
    }
    if (overflow)
      throw InputError(path.string() + ": dataset '" + name + "' is " + dims_text(d) + " in chunks of " + dims_text(chunk) +
                       ", which cannot be; the file is damaged");
    hsize_t total = 1, have = 0;
    for (std::size_t i = 0; i < d.size() && !overflow; ++i)  // (H5Dget_num_chunks: HDF5 1.10 refuses H5S_ALL)
      overflow = chunk[i] == 0 || __builtin_mul_overflow(total, d[i] / chunk[i] + (d[i] % chunk[i] != 0), &total);
    if (!overflow && H5Dget_num_chunks(dataset, space, &have) >= 0 && have == total) return;
    stored = std::to_string(have) + " of its " + (overflow ? std::string("too many") : std::to_string(total)) + " chunks";
  } else if (layout == H5D_CONTIGUOUS || layout == H5D_COMPACT) {
    hsize_t bytes = element_size;
    bool overflow = false;
    for (hsize_t n : d) overflow |= __builtin_mul_overflow(bytes, n, &bytes);
    if (!overflow && bytes == H5Dget_storage_size(dataset)) return;
    stored = std::to_string(H5Dget_storage_size(dataset)) + " bytes";
  } else {
    return;
  }
  throw InputError(path.string() + ": dataset '" + name + "' is " + dims_text(d) + " but stores " + stored +
                   "; the file is damaged or incompletely written");
}

}  // namespace

bool h5_has_dataset(const fs::path& path, const std::string& name) {
  silence_hdf5();
  if (!fs::is_regular_file(path) || H5Fis_hdf5(path.c_str()) <= 0) return false;
  H5Id f(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  return f.ok() && H5Lexists(f, name.c_str(), H5P_DEFAULT) > 0;
}

std::size_t h5_count_patches(const fs::path& path) {
  H5Id f = open_file(path);
  H5Id x = open_dataset(f, path, "x");
  auto d = dims_of(x);
  if (d.size() != 4 || d[1] != kPatchSide || d[2] != kPatchSide || d[3] != kPatchChannels || !is_uint8(x))
    throw InputError(path.string() + ": dataset 'x' is " + dims_text(d) + (is_uint8(x) ? "" : " (not uint8)") +
                     "; expected N x 96 x 96 x 3 uint8 as PCam ships it");
  require_stored(x, path, "x", d, 1);
  return d[0];
}

std::vector<int> h5_read_labels(const fs::path& path) {
  H5Id f = open_file(path);
  H5Id y = open_dataset(f, path, "y");
  auto d = dims_of(y);
  std::size_t n = d.empty() ? 0 : d[0];
  hsize_t per_row = 1;
  for (std::size_t i = 1; i < d.size(); ++i) per_row *= d[i];
  if (d.empty() || per_row != 1 || !is_uint8(y))
    throw InputError(path.string() + ": dataset 'y' is " + dims_text(d) + "; expected N x 1 x 1 x 1 uint8 labels");
  require_stored(y, path, "y", d, 1);
  std::vector<std::uint8_t> raw(n);
  if (n && H5Dread(y, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw.data()) < 0)
    throw InputError(path.string() + ": cannot read dataset 'y'");
  std::vector<int> labels(n);
  for (std::size_t i = 0; i < n; ++i) {
    if (raw[i] > 1)
      throw InputError(path.string() + ": y[" + std::to_string(i) + "] is " + std::to_string(raw[i]) + "; labels must be 0 or 1");
    labels[i] = raw[i];
  }
  return labels;
}

std::vector<std::string> h5_read_ids(const fs::path& path) {
  H5Id f = open_file(path);
  H5Id ids = open_dataset(f, path, "ids");
  auto d = dims_of(ids);
  std::size_t n = d.empty() ? 0 : d[0];
  H5Id type(H5Dget_type(ids), H5Tclose);
  if (H5Tget_class(type) != H5T_STRING || H5Tis_variable_str(type) > 0)
    throw InputError(path.string() + ": dataset 'ids' is not fixed-length strings; rewrite it with 'histoscan pack'");
  std::size_t width = H5Tget_size(type);
  require_stored(ids, path, "ids", d, width);
  if (width == 0 || n > SIZE_MAX / width)  // a chunked claim can still be huge
    throw InputError(path.string() + ": dataset 'ids' is " + dims_text(d) + " strings of " + std::to_string(width) +
                     " bytes; the file is damaged");
  std::vector<char> raw(n * width);
  if (n && H5Dread(ids, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw.data()) < 0)
    throw InputError(path.string() + ": cannot read dataset 'ids'");
  std::vector<std::string> out(n);
  for (std::size_t i = 0; i < n; ++i) {
    const char* s = raw.data() + i * width;
    out[i].assign(s, strnlen(s, width));
  }
  return out;
}

void h5_read_patches(const fs::path& path, const std::vector<std::size_t>& rows, std::uint8_t* out) {
  std::size_t n = h5_count_patches(path);
  H5Id f = open_file(path);
  H5Id x = open_dataset(f, path, "x");
  H5Id file_space(H5Dget_space(x), H5Sclose);
  // Read runs of consecutive rows with one hyperslab each, in file order.
  std::vector<std::size_t> order(rows.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return rows[a] < rows[b]; });
  std::vector<std::uint8_t> buffer;
  for (std::size_t k = 0; k < order.size();) {
    std::size_t first = rows[order[k]];
    if (first >= n) throw std::out_of_range(path.string() + ": row " + std::to_string(first) + " past the end");
    std::size_t end = k + 1;
    while (end < order.size() && rows[order[end]] == rows[order[end - 1]] + 1) ++end;
    hsize_t count = end - k;
    hsize_t start[4] = {first, 0, 0, 0}, size[4] = {count, kPatchSide, kPatchSide, kPatchChannels};
    H5Sselect_hyperslab(file_space, H5S_SELECT_SET, start, nullptr, size, nullptr);
    H5Id mem_space(H5Screate_simple(4, size, nullptr), H5Sclose);
    buffer.resize(count * kPatchBytes);
    if (H5Dread(x, H5T_NATIVE_UINT8, mem_space, file_space, H5P_DEFAULT, buffer.data()) < 0)
      throw InputError(path.string() + ": cannot read rows " + std::to_string(first) + ".." + std::to_string(first + count - 1) +
                       " of 'x' (file damaged or truncated?)");
    for (std::size_t j = 0; j < count; ++j)
      std::memcpy(out + order[k + j] * kPatchBytes, buffer.data() + j * kPatchBytes, kPatchBytes);
    k = end;
  }
}

void h5_write_packed(const fs::path& path, std::size_t n, const std::uint8_t* pixels, const std::vector<int>& labels,
                     const std::vector<std::string>& ids) {
  silence_hdf5();
  H5Id f(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
  if (!f.ok()) throw InputError("cannot create " + path.string() + "; check the folder is writable");
  auto fail = [&](const char* what) { throw InputError("writing " + path.string() + " failed at " + what + " (disk full?)"); };
  if (pixels) {
    hsize_t dims[4] = {n, kPatchSide, kPatchSide, kPatchChannels};
    H5Id space(H5Screate_simple(4, dims, nullptr), H5Sclose);
    H5Id d(H5Dcreate2(f, "x", H5T_STD_U8LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Dclose);
    if (!d.ok() || (n && H5Dwrite(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, pixels) < 0)) fail("x");
  }
  // Unlabeled patches (a test folder) get no `y` at all rather than a made-up label.
  if (labels.size() == n && std::all_of(labels.begin(), labels.end(), [](int l) { return l == 0 || l == 1; })) {
    hsize_t dims[4] = {n, 1, 1, 1};
    std::vector<std::uint8_t> y(labels.begin(), labels.end());
    H5Id space(H5Screate_simple(4, dims, nullptr), H5Sclose);
    H5Id d(H5Dcreate2(f, "y", H5T_STD_U8LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Dclose);
    if (!d.ok() || (n && H5Dwrite(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, y.data()) < 0)) fail("y");
  }
  if (ids.size() == n) {
    std::size_t width = 1;
    for (const auto& id : ids) width = std::max(width, id.size());
    std::vector<char> raw(n * width, '\0');
    for (std::size_t i = 0; i < n; ++i) std::memcpy(raw.data() + i * width, ids[i].data(), ids[i].size());
    H5Id type(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(type, width);
    H5Tset_strpad(type, H5T_STR_NULLPAD);
    hsize_t dims[1] = {n};
    H5Id space(H5Screate_simple(1, dims, nullptr), H5Sclose);
    H5Id d(H5Dcreate2(f, "ids", type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Dclose);
    if (!d.ok() || (n && H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw.data()) < 0)) fail("ids");
  }
  if (H5Fflush(f, H5F_SCOPE_GLOBAL) < 0) fail("flush");
}

namespace {
// What the probe's reads may add to the resident set. Honest reads of ids, labels and two
// rows need a few megabytes (a chunk and HDF5's 1 MB chunk cache); a damaged header that makes
// HDF5 fill memory is stopped at this mark, and the lower it is, the sooner: at 1024 MiB such
// files took 2 s of CPU (6 s on a busy machine, over fuzz_hdf5's 10 s timeout when busier).
constexpr int kProbeMemoryMib = 256;
}  // namespace

void h5_probe_isolated(const fs::path& path, ProbeFn probe, const std::string& arg) {
  // Some damaged headers make HDF5 allocate and fill gigabytes (fuzz_hdf5: 4.3 GB from a
  // 17 kB file); honest reads of ids, labels and two rows need a few megabytes.
  // An error in the child (kThrew) is left to the caller's own reads, which meet it again
  // and report it with its message.
  ProbeOutcome outcome = probe_in_child(probe, arg, kProbeMemoryMib);
  if (outcome.kind == ProbeOutcome::kTooMuchMemory)
    throw InputError(path.string() + ": reading its metadata made the HDF5 library take over " + std::to_string(kProbeMemoryMib) +
                     " MiB of memory; the file is damaged: write it again (histoscan pack) or download it again");
  if (outcome.kind == ProbeOutcome::kHung)
    throw InputError(path.string() +
                     ": reading its metadata did not finish within 5 minutes; the file is damaged or its disk does not answer");
  if (outcome.kind == ProbeOutcome::kCrashed)
    throw InputError(path.string() + ": the HDF5 library crashed reading this file (" + outcome.how +
                     "); the file is damaged: write it again (histoscan pack) or download it again");
}

}  // namespace histoscan::data
