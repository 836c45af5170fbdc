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

#include <torch/torch.h>
#include <opencv2/imgproc.hpp>

#include "histoscan/data/image_io.h"
#include "histoscan/predict/predictor.h"
#include "histoscan/util/atomic_file.h"
#include "histoscan/util/error.h"
#include "histoscan/util/log.h"
#include "histoscan/util/progress.h"

namespace histoscan::scan {

namespace {

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

ScoreStats score_tiles(torch::nn::Sequential& net, c10::Device device, slide::ScanPlan& plan, const ScanOptions& o) {
  // Readers cut blocks into tiles; this thread runs the network.
  BlockQueue queue(static_cast<std::size_t>(2 * o.readers + 2));
  std::atomic<std::size_t> next{0};
  std::exception_ptr reader_error;
  std::mutex error_mutex;
  auto reader = [&] {
    try {
      for (std::size_t b = next++; b < plan.blocks.size(); b = next++) {
        Block block{plan.blocks[b], slide::read_block(plan, plan.blocks[b], o.stride)};
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
  threads.reserve(o.readers);
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
  ProgressBar bar(static_cast<long long>(plan.tiles), "scanning ");
  std::vector<std::uint8_t> batch(std::size_t(o.batch) * data::kPatchBytes);
  std::vector<std::uint32_t> batch_cells;
  ScoreStats stats;
  auto run_batch = [&] {
    if (batch_cells.empty()) return;
    data::normalize_stain(o.stain, batch.data(), data::kPatchBytes / 3, batch_cells.size());
    auto probs =
        predict::sigmoid(predict::predict_logits(net, batch.data(), batch_cells.size(), o.batch, device, o.views, o.amp));
    for (std::size_t k = 0; k < batch_cells.size(); ++k) plan.grid.probability[batch_cells[k]] = static_cast<float>(probs[k]);
    stats.scored += batch_cells.size();
    batch_cells.clear();
    if (o.progress) {
      double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_scan).count();
      char rate[48];
      std::snprintf(rate, sizeof rate, "%.0f tiles/s", secs > 0 ? double(stats.scored) / secs : 0.0);
      bar.update(static_cast<long long>(stats.scored), rate);
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
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_scan).count();
  return stats;
}

nlohmann::json scan_slide(torch::nn::Sequential& net, c10::Device device, const fs::path& slide_path, const fs::path& out_dir,
                          const ScanOptions& o, slide::ScanGrid* grid) {
  auto plan = slide::plan_scan(slide_path, o);
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
  auto stats = score_tiles(net, device, plan, o);
  auto summary = slide::write_scan_outputs(out_dir, plan, o, stats.scored, stats.seconds);
  cleanup.done = true;
  if (grid) *grid = std::move(plan.grid);
  return summary;
}

}  // namespace histoscan::scan
