#include "histoscan/pipeline/predict_stream.h"

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <future>
#include <numeric>

#include <torch/torch.h>

#include "histoscan/predict/predictor.h"
#include "histoscan/util/atomic_file.h"
#include "histoscan/util/error.h"
#include "histoscan/util/progress.h"

namespace histoscan::pipeline {

StreamResult predict_to_csv(torch::nn::Sequential& net, const data::PatchIndex& index, const fs::path& out_csv,
                            c10::Device device, const StreamOptions& options) {
  auto t0 = std::chrono::steady_clock::now();
  StreamResult result;
  const std::size_t n = index.entries.size();
  const std::size_t batch = static_cast<std::size_t>(options.batch);
  data::LoadOptions load;
  load.threads = options.threads;
  load.decode = options.decode;
  load.skip_bad = options.skip_bad;
  load.progress = false;
  auto load_chunk = [&](std::size_t start) {
    std::vector<std::size_t> rows(std::min(batch, n - start));
    std::iota(rows.begin(), rows.end(), start);
    std::vector<data::SkippedFile> skipped;
    auto store = data::load_patches(index, rows, load, &skipped);
    data::normalize_stain(options.stain, store.pixels.data(), data::kPatchBytes / 3, store.size(), options.threads);
    return std::make_pair(std::move(store), std::move(skipped));
  };

  AtomicPath out(out_csv);
  std::ofstream f(out.temp(), std::ios::trunc);
  if (!f) throw InputError("cannot write " + out_csv.string() + "; check the folder's permissions");
  f << "id,label\n";
  ProgressBar bar(static_cast<long long>(n), "predicting ");
  std::future<std::pair<data::PatchStore, std::vector<data::SkippedFile>>> next;
  if (n) next = std::async(std::launch::async, load_chunk, 0);
  char buf[32];
  for (std::size_t start = 0; start < n; start += batch) {
    auto [store, skipped] = next.get();
    if (start + batch < n) next = std::async(std::launch::async, load_chunk, start + batch);
    result.skipped.insert(result.skipped.end(), skipped.begin(), skipped.end());
    auto probs = predict::sigmoid(
        predict::predict_logits(net, store.pixels.data(), store.size(), options.batch, device, options.views, options.amp));
    for (std::size_t i = 0; i < store.size(); ++i) {
      if (options.binary_threshold >= 0) std::snprintf(buf, sizeof buf, "%d", probs[i] >= options.binary_threshold ? 1 : 0);
      else std::snprintf(buf, sizeof buf, "%.6f", probs[i]);
      f << store.ids[i] << ',' << buf << '\n';
    }
    result.images += store.size();
    if (options.progress) bar.update(static_cast<long long>(std::min(n, start + batch)));
  }
  bar.finish();
  f.flush();
  if (!f) throw InputError("writing " + out_csv.string() + " failed (disk full?)");
  f.close();
  out.commit();
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return result;
}

}  // namespace histoscan::pipeline
