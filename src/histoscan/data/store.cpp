#include "histoscan/data/store.h"

#include <atomic>
#include <mutex>
#include <numeric>
#include <ostream>

#include "histoscan/data/hdf5_io.h"
#include "histoscan/util/atomic_file.h"
#include "histoscan/util/csv.h"
#include "histoscan/util/error.h"
#include "histoscan/util/parallel.h"
#include "histoscan/util/progress.h"

namespace histoscan::data {

PatchStore load_patches(const PatchIndex& index, const std::vector<std::size_t>& rows, const LoadOptions& options,
                        std::vector<SkippedFile>* skipped) {
  PatchStore store;
  std::size_t n = rows.size();
  store.pixels.resize(n * kPatchBytes);

  std::vector<char> bad(n, 0);
  std::vector<std::string> reasons(n);
  if (index.kind == SourceKind::pcam_h5 || index.kind == SourceKind::packed) {
    std::vector<std::size_t> h5_rows(n);
    for (std::size_t k = 0; k < n; ++k) h5_rows[k] = index.entries[rows[k]].row;
    h5_read_patches(index.x_file, h5_rows, store.pixels.data());
  } else {
    ProgressBar bar(static_cast<long long>(n), "decoding ");
    std::atomic<long long> done{0};
    std::mutex bar_mutex;
    parallel_for(n, options.threads, [&](std::size_t k) {
      const PatchEntry& e = index.entries[rows[k]];
      try {
        decode_patch(e.path, store.pixels.data() + k * kPatchBytes, options.decode);
      } catch (const InputError& err) {
        if (!options.skip_bad) throw;
        bad[k] = 1;
        reasons[k] = err.what();
      }
      long long d = ++done;
      if (options.progress && (d % 256 == 0 || d == static_cast<long long>(n))) {
        std::lock_guard<std::mutex> lock(bar_mutex);
        bar.update(d);
      }
    });
    bar.finish();
  }

  // Compact away skipped images, keeping order.
  std::size_t kept = 0;
  for (std::size_t k = 0; k < n; ++k) {
    const PatchEntry& e = index.entries[rows[k]];
    if (bad[k]) {
      if (skipped) skipped->push_back({e.id, e.path, reasons[k]});
      continue;
    }
    if (kept != k) std::copy_n(store.pixels.data() + k * kPatchBytes, kPatchBytes, store.pixels.data() + kept * kPatchBytes);
    store.ids.push_back(e.id);
    store.labels.push_back(e.label);
    ++kept;
  }
  store.pixels.resize(kept * kPatchBytes);
  return store;
}

PatchStore load_all_patches(const PatchIndex& index, const LoadOptions& options, std::vector<SkippedFile>* skipped) {
  std::vector<std::size_t> rows(index.entries.size());
  std::iota(rows.begin(), rows.end(), 0);
  return load_patches(index, rows, options, skipped);
}

void write_packed(const PatchStore& store, const fs::path& out) {
  AtomicPath target(out);
  h5_write_packed(target.temp(), store.size(), store.pixels.data(), store.labels, store.ids);
  target.commit();
}

void write_skipped_csv(const std::vector<SkippedFile>& skipped, const fs::path& out) {
  write_file_atomic(out, [&](std::ostream& f) {
    f << "id,path,reason\n";
    for (const auto& s : skipped) f << csv_field(s.id) << ',' << csv_field(s.path.string()) << ',' << csv_field(s.reason) << '\n';
  });
}

}  // namespace histoscan::data
