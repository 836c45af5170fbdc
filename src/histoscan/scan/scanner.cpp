#include "histoscan/scan/scanner.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include <opencv2/imgproc.hpp>
#include <torch/torch.h>

#include "histoscan/data/image_io.h"
#include "histoscan/predict/predictor.h"
#include "histoscan/slide/scan_map.h"
#include "histoscan/slide/slide.h"
#include "histoscan/util/atomic_file.h"
#include "histoscan/util/error.h"
#include "histoscan/util/log.h"
#include "histoscan/util/progress.h"
#include "histoscan/util/sysinfo.h"

namespace histoscan::scan {

namespace {

constexpr int kBlock = 8;  // tiles per block side: one slide read serves up to 64 tiles

// The tissue tiles of one block, cut from one read of the slide.
struct Block {
  std::vector<std::uint32_t> cells;  // j * nx + i
  std::vector<std::uint8_t> pixels;  // cells.size() x 96 x 96 x 3
};

// A queue of at most `capacity` blocks between the readers and the network.
class BlockQueue {
 public:
  explicit BlockQueue(std::size_t capacity) : capacity_(capacity) {}
  // False when the consumer has stopped.
  bool push(Block&& b) {
    std::unique_lock<std::mutex> lock(m_);
    not_full_.wait(lock, [&] { return q_.size() < capacity_ || stopped_; });
    if (stopped_) return false;
    q_.push_back(std::move(b));
    not_empty_.notify_one();
    return true;
  }
  // False when every producer is done and the queue is empty.
  bool pop(Block& b) {
    std::unique_lock<std::mutex> lock(m_);
    not_empty_.wait(lock, [&] { return !q_.empty() || producers_ == 0; });
    if (q_.empty()) return false;
    b = std::move(q_.front());
    q_.pop_front();
    not_full_.notify_one();
    return true;
  }
  void set_producers(int n) {
    std::lock_guard<std::mutex> lock(m_);
    producers_ = n;
  }
  void producer_done() {
    std::lock_guard<std::mutex> lock(m_);
    --producers_;
    not_empty_.notify_all();
  }
  void stop() {
    std::lock_guard<std::mutex> lock(m_);
    stopped_ = true;
    not_full_.notify_all();
  }

 private:
  std::mutex m_;
  std::condition_variable not_full_, not_empty_;
  std::deque<Block> q_;
  std::size_t capacity_;
  int producers_ = 0;
  bool stopped_ = false;
};

}  // namespace

nlohmann::json scan_slide(torch::nn::Sequential& net, c10::Device device, const fs::path& slide_path,
                          const fs::path& out_dir, const ScanOptions& o) {
  if (o.stride < 1 || o.stride > data::kPatchSide) throw InputError("--stride " + std::to_string(o.stride) + ": must be 1 to 96");
  if (o.min_tissue < 0 || o.min_tissue > 1) throw InputError("--min-tissue: must be between 0 and 1");
  if (o.batch < 1) throw InputError("--batch: must be at least 1");
  if (o.readers < 1) throw InputError("--readers: must be at least 1");
  if (o.thumbnail < 64) throw InputError("--thumbnail: must be at least 64 pixels");
  if (o.top_k < 1) throw InputError("--top-k: must be at least 1");
  if (o.smooth < 0) throw InputError("--smooth: must be 0 (none) or a radius in tiles");
  auto t0 = std::chrono::steady_clock::now();

  auto slide = slide::Slide::open(slide_path);
  auto plan = slide::plan_read(slide, o.target_mpp, o.level, o.slide_mpp);
  if (plan.mpp_source == "assumed")
    log::warn(slide_path.string() + " records no microns per pixel; reading level 0 as if it were " +
              format_number(o.target_mpp) + " µm/px (give --slide-mpp if it is not)");
  if (plan.read_scale < 0.99)
    log::warn("--level " + std::to_string(plan.level) + " is coarser than the network's " + format_number(o.target_mpp) +
              " µm/px: tiles are enlarged " + format_number(1 / plan.read_scale) + " times");
  const auto& level0 = slide.levels()[0];
  log::info("slide " + slide_path.string() + " (" + slide.vendor() + ", " + std::to_string(level0.width) + "x" +
            std::to_string(level0.height) + ", " + std::to_string(slide.levels().size()) + " levels, " +
            format_number(plan.slide_mpp) + " µm/px " + plan.mpp_source + "); reading level " + std::to_string(plan.level) +
            (plan.read_scale == 1.0 ? std::string(" as is") : " shrunk " + format_number(plan.read_scale) + " times"));

  // The folder is made here; if the scan then fails, a folder this scan made is removed again.
  const bool existed = fs::exists(out_dir);
  prepare_output_dir(out_dir, o.overwrite, "--out");
  struct RemoveIfFailed {
    const fs::path& dir;
    bool existed, done = false;
    ~RemoveIfFailed() {
      std::error_code ec;
      if (!done && !existed && fs::is_empty(dir, ec)) fs::remove(dir, ec);
    }
  } cleanup{out_dir, existed};

  // Tissue on the thumbnail, then the tiles that have enough of it.
  double thumb_scale = 0;
  cv::Mat thumb = slide.thumbnail(o.thumbnail, &thumb_scale);
  auto tissue = slide::find_tissue(thumb);
  auto grid = slide::make_grid(level0.width, level0.height, plan.input_to_level0, o.stride);
  grid.level = plan.level;
  grid.target_mpp = o.target_mpp;
  auto fraction = slide::tissue_fractions(grid, tissue, thumb_scale);
  std::vector<std::vector<std::uint32_t>> blocks;  // tissue tiles, grouped by block
  const int bx_n = (grid.nx + kBlock - 1) / kBlock, by_n = (grid.ny + kBlock - 1) / kBlock;
  std::size_t tiles = 0;
  for (int bj = 0; bj < by_n; ++bj)
    for (int bi = 0; bi < bx_n; ++bi) {
      std::vector<std::uint32_t> cells;
      for (int j = bj * kBlock; j < std::min(grid.ny, (bj + 1) * kBlock); ++j)
        for (int i = bi * kBlock; i < std::min(grid.nx, (bi + 1) * kBlock); ++i)
          if (fraction[std::size_t(j) * grid.nx + i] >= o.min_tissue && fraction[std::size_t(j) * grid.nx + i] > 0)
            cells.push_back(static_cast<std::uint32_t>(std::size_t(j) * grid.nx + i));
      tiles += cells.size();
      if (!cells.empty()) blocks.push_back(std::move(cells));
    }
  std::vector<float>().swap(fraction);  // only the blocks' tiles are needed from here on
  if (grid.nx == 0 || grid.ny == 0)
    log::warn(slide_path.string() + ": smaller than one " + std::to_string(data::kPatchSide) + "-pixel tile at " +
              format_number(o.target_mpp) + " µm/px; nothing to score, the heatmap is empty");
  else if (tiles == 0)
    log::warn(slide_path.string() + ": no tissue found (saturation threshold " + format_number(tissue.threshold) +
              "); the heatmap is empty");
  else
    log::info(std::to_string(tiles) + " tissue tiles of " + std::to_string(std::size_t(grid.nx) * grid.ny) + " (stride " +
              std::to_string(o.stride) + " px at " + format_number(o.target_mpp) + " µm/px)");

  // Readers cut blocks into tiles; this thread runs the network.
  const int P = data::kPatchSide;
  BlockQueue queue(static_cast<std::size_t>(2 * o.readers + 2));
  std::atomic<std::size_t> next{0};
  std::exception_ptr reader_error;
  std::mutex error_mutex;
  auto reader = [&] {
    try {
      for (std::size_t b = next++; b < blocks.size(); b = next++) {
        const auto& cells = blocks[b];
        int i0 = grid.nx, j0 = grid.ny, i1 = 0, j1 = 0;  // the tissue tiles' bounding box
        for (auto c : cells) {
          int i = static_cast<int>(c % grid.nx), j = static_cast<int>(c / grid.nx);
          i0 = std::min(i0, i), j0 = std::min(j0, j), i1 = std::max(i1, i), j1 = std::max(j1, j);
        }
        // The block's region in input pixels, read at the plan's level and brought to input scale.
        int wI = (i1 - i0) * o.stride + P, hI = (j1 - j0) * o.stride + P;
        std::int64_t x0 = grid.x0(i0), y0 = grid.y0(j0);
        int wL = static_cast<int>(std::ceil(wI * plan.read_scale - 1e-9)), hL = static_cast<int>(std::ceil(hI * plan.read_scale - 1e-9));
        cv::Mat region = slide.read(plan.level, x0, y0, wL, hL);
        if (wL != wI || hL != hI) {
          cv::Mat scaled;
          cv::resize(region, scaled, cv::Size(wI, hI), 0, 0, plan.read_scale > 1 ? cv::INTER_AREA : cv::INTER_LINEAR);
          region = scaled;
        }
        Block block;
        block.cells = cells;
        block.pixels.resize(cells.size() * data::kPatchBytes);
        for (std::size_t k = 0; k < cells.size(); ++k) {
          int i = static_cast<int>(cells[k] % grid.nx), j = static_cast<int>(cells[k] / grid.nx);
          cv::Mat dst(P, P, CV_8UC3, block.pixels.data() + k * data::kPatchBytes);
          region(cv::Rect((i - i0) * o.stride, (j - j0) * o.stride, P, P)).copyTo(dst);
        }
        if (!queue.push(std::move(block))) break;
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!reader_error) reader_error = std::current_exception();
    }
    queue.producer_done();
  };
  queue.set_producers(o.readers);
  std::vector<std::thread> threads;
  for (int r = 0; r < o.readers; ++r) threads.emplace_back(reader);
  struct Joiner {
    BlockQueue& q;
    std::vector<std::thread>& t;
    ~Joiner() {
      q.stop();
      for (auto& th : t) th.join();
    }
  } joiner{queue, threads};

  auto t_scan = std::chrono::steady_clock::now();
  ProgressBar bar(static_cast<long long>(tiles), "scanning ");
  std::vector<std::uint8_t> batch(std::size_t(o.batch) * data::kPatchBytes);
  std::vector<std::uint32_t> batch_cells;
  std::size_t scored = 0;
  auto run_batch = [&] {
    if (batch_cells.empty()) return;
    auto probs = predict::sigmoid(predict::predict_logits(net, batch.data(), batch_cells.size(), o.batch, device, o.tta, o.amp));
    for (std::size_t k = 0; k < batch_cells.size(); ++k) grid.probability[batch_cells[k]] = static_cast<float>(probs[k]);
    scored += batch_cells.size();
    batch_cells.clear();
    if (o.progress) {
      double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_scan).count();
      char rate[48];
      std::snprintf(rate, sizeof rate, "%.0f tiles/s", secs > 0 ? double(scored) / secs : 0.0);
      bar.update(static_cast<long long>(scored), rate);
    }
  };
  Block block;
  while (queue.pop(block)) {
    for (std::size_t k = 0; k < block.cells.size(); ++k) {
      std::copy_n(block.pixels.data() + k * data::kPatchBytes, data::kPatchBytes,
                  batch.data() + batch_cells.size() * data::kPatchBytes);
      batch_cells.push_back(block.cells[k]);
      if (batch_cells.size() == static_cast<std::size_t>(o.batch)) run_batch();
    }
  }
  if (reader_error) std::rethrow_exception(reader_error);
  run_batch();
  bar.finish();
  double scan_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_scan).count();

  // Outputs: tiles.csv has the network's probabilities; the rest, the smoothed ones.
  double max_tile = 0;
  for (float p : grid.probability)
    if (!std::isnan(p)) max_tile = std::max(max_tile, double(p));
  auto smoothed = slide::smooth_probabilities(grid, o.smooth);
  slide::write_tiles_csv(out_dir / "tiles.csv", grid, o.smooth > 0 ? &smoothed : nullptr);
  grid.probability = std::move(smoothed);
  std::vector<float> scored_probs;
  for (float p : grid.probability)
    if (!std::isnan(p)) scored_probs.push_back(p);
  std::sort(scored_probs.begin(), scored_probs.end(), std::greater<float>());
  std::size_t k = std::min<std::size_t>(static_cast<std::size_t>(o.top_k), scored_probs.size());
  double top_mean = 0;
  for (std::size_t i = 0; i < k; ++i) top_mean += scored_probs[i];
  if (k) top_mean /= double(k);
  std::size_t tumour_cells = static_cast<std::size_t>(
      std::count_if(scored_probs.begin(), scored_probs.end(), [&](float p) { return p >= o.threshold; }));
  double thumb_px_mm2 = std::pow(plan.slide_mpp * 1e-3 / thumb_scale, 2);
  double max_p = scored_probs.empty() ? 0.0 : double(scored_probs.front());

  slide::write_png(out_dir / "heatmap.png", slide::render_heatmap(thumb, thumb_scale, grid));
  auto geo = slide::tumour_geojson(grid, o.threshold, grid.cell_area_mm2());
  write_file_atomic(out_dir / "tumour.geojson", [&](std::ostream& f) { f << geo.dump() << '\n'; });
  nlohmann::json summary = {
      {"slide", fs::absolute(slide_path).string()},
      {"vendor", slide.vendor()},
      {"width", level0.width},
      {"height", level0.height},
      {"levels", slide.levels().size()},
      {"slide_mpp", plan.slide_mpp},
      {"mpp_source", plan.mpp_source},
      {"target_mpp", o.target_mpp},
      {"level", plan.level},
      {"level_downsample", plan.level_downsample},
      {"read_scale", plan.read_scale},
      {"stride", o.stride},
      {"tile_level0_px", P * plan.input_to_level0},
      {"min_tissue", o.min_tissue},
      {"tissue_threshold_saturation", tissue.threshold},
      {"tiles_total", std::size_t(grid.nx) * grid.ny},
      {"tiles_scored", scored},
      {"tissue_area_mm2", double(tissue.pixels) * thumb_px_mm2},
      {"tumour_area_mm2", double(tumour_cells) * grid.cell_area_mm2()},
      {"tumour_regions", geo["features"].size()},
      {"smooth", o.smooth},
      {"max_tile_probability", max_tile},
      {"max_probability", max_p},
      {"top_k", k},
      {"top_k_mean_probability", top_mean},
      {"threshold", o.threshold},
      {"call", scored > 0 && top_mean >= o.threshold ? "tumour" : "no tumour"},  // the top-k mean, not one tile
      {"seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()},
      {"scan_seconds", scan_seconds},
      {"tiles_per_second", scan_seconds > 0 ? double(scored) / scan_seconds : 0.0},
      {"tta", o.tta},
      {"readers", o.readers},
      {"batch", o.batch},
      {"peak_rss_mib", peak_rss_mib()},
  };
  write_file_atomic(out_dir / "summary.json", [&](std::ostream& f) { f << summary.dump(2) << '\n'; });
  cleanup.done = true;
  return summary;
}

}  // namespace histoscan::scan
