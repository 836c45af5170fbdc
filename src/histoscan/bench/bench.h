#pragma once
// `histoscan bench`: throughput of training, prediction and decoding, the machine's matrix
// multiply rate, and the same work by the PyTorch peer, side by side in one run.
#include <cstdint>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

namespace histoscan::bench {

struct BenchOptions {
  std::filesystem::path data;  // class folders 0/ 1/ of real patches
  std::filesystem::path peer;  // torch_seed_recipe.py; empty or missing: no peer rows
  int images = 512;            // patches per measurement
  int runs = 3;                // each figure is the median of this many runs
  int threads = 0;             // 0: all cores, for histoscan and the peer alike
  std::string device =
      "cpu";            // histoscan's network rows (training, inference, predict, scan); the peer and the ranks stay on the CPU
  int train_steps = 6;  // timed training steps (batch 128) after one warm-up step
  std::int64_t slide_side = 0;  // > 0: also scan a slide this many pixels square in a child process and report its peak RSS
  std::filesystem::path exe;    // the histoscan binary, for that child
};

// Multiply-accumulate count of one seed-cnn forward pass on a 96x96 patch, times 2 (FLOP).
double seed_cnn_flops_per_patch();

// Runs every measurement; returns {"machine": ..., "results": [{"name", "unit", "histoscan",
// "peer", "ratio"}...]} and prints progress to stderr.
nlohmann::json run_bench(const BenchOptions& options);

// The results as a Markdown table for people.
std::string format_table(const nlohmann::json& results);

}  // namespace histoscan::bench
