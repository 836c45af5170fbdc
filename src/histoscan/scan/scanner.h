#pragma once
// `histoscan scan`: a whole slide into a tumour heatmap. Tissue is found on a thumbnail;
// only tissue tiles are read, by reader threads feeding the network through a bounded
// queue, so memory does not grow with the slide. The stages that need no network (plan,
// write) are in slide/scan_plan.h; this is the one that scores, and the three together.
#include <filesystem>
#include <string>

#include <c10/core/Device.h>
#include <torch/nn/modules/container/sequential.h>
#include <nlohmann/json.hpp>

#include "histoscan/slide/scan_plan.h"

namespace histoscan::scan {

namespace fs = std::filesystem;
using slide::ScanOptions;

// What the score stage did.
struct ScoreStats {
  std::size_t scored = 0;
  double seconds = 0;
};

// Reads the plan's tissue tiles (options.readers threads) and scores them with `net` (already
// on `device`) into plan.grid.probability. Rethrows the first error of a reader.
ScoreStats score_tiles(torch::nn::Sequential& net, c10::Device device, slide::ScanPlan& plan, const ScanOptions& options);

// plan_scan, score_tiles and write_scan_outputs on one slide into out_dir (created once the
// slide has opened and refused when it is not empty, unless options.overwrite; removed again
// when this scan made it and then failed). Returns the summary, and the scored grid in *grid
// when given (the Python module returns its tiles). Throws InputError for a file that is not
// a slide, a missing level.
nlohmann::json scan_slide(torch::nn::Sequential& net, c10::Device device, const fs::path& slide_path, const fs::path& out_dir,
                          const ScanOptions& options, slide::ScanGrid* grid = nullptr);

}  // namespace histoscan::scan
