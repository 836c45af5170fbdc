#pragma once
// The stages of a slide scan that need no network: plan (open the slide, choose the level,
// find tissue, lay out the tiles and group them in blocks) and write (heatmap.png,
// tissue.png, tiles.csv, tumour.geojson, summary.json). scan::scan_slide runs the network
// between the two; a cohort runs the three stages for each of its slides.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <opencv2/core/mat.hpp>

#include "histoscan/data/stain.h"
#include "histoscan/slide/scan_map.h"
#include "histoscan/slide/slide.h"

namespace histoscan::slide {

struct ScanOptions {
  double target_mpp = 0.972;     // microns per network-input pixel (PCam: 96 px at 0.972)
  double slide_mpp = 0;          // level 0's, replacing the slide's own (0: the slide's)
  int level = -1;                // pyramid level to read (-1: chosen from the resolutions)
  int stride = 32;               // input pixels between tiles
  double min_tissue = 0.5;       // fraction of a tile that must be tissue for it to be scored
  double tissue_threshold = -1;  // HSV saturation (0..255) above which a pixel is tissue (-1: from the glass)
  int batch = 128;
  int readers = 1;         // threads reading and cutting tiles
  int thumbnail = 2048;    // longer side of the thumbnail (tissue mask and heatmap)
  int top_k = 10;          // summary: mean probability of the k most likely tiles
  double threshold = 0.5;  // tumour at probability >= threshold (regions, area, call)
  int smooth = 2;          // heatmap, regions, area and call use the mean over (2 smooth + 1)^2 cells
  bool progress = true;
  bool overwrite = false;      // write into a non-empty out_dir
  int views = 1;               // dihedral views averaged per tile (--tta: 2, 4 or 8)
  bool amp = false;            // bfloat16 (model::forward); the network from prepare_inference
  data::StainReference stain;  // the checkpoint's stain normalization, applied to each tile
  // A cohort asks more of a slide than one scan does: what a single scan only warns about
  // fails the slide (InputError), so it gets a row in failures.csv instead of a guess.
  bool require_mpp = false;     // a slide that records no microns per pixel (and no slide_mpp given)
  bool require_tissue = false;  // a slide on which no tissue tile is found
};

// Throws InputError naming the flag for an option out of range.
void check_scan_options(const ScanOptions& options);

constexpr int kScanBlock = 8;  // tiles per block side: one slide read serves up to 64 tiles

// What the plan stage found; the score stage fills grid.probability.
struct ScanPlan {
  Slide slide;
  ReadPlan read;
  cv::Mat thumb;           // RGB, options.thumbnail on its longer side
  double thumb_scale = 0;  // thumbnail pixels per level-0 pixel
  TissueMask tissue;
  ScanGrid grid;
  std::vector<std::vector<std::uint32_t>> blocks;  // tissue tiles (j * nx + i), grouped by block
  std::size_t tiles = 0;                           // tissue tiles in all blocks
  std::chrono::steady_clock::time_point started;
  double plan_seconds = 0;  // opening, thumbnail, tissue and tiles
};

// Opens the slide, plans its reading and finds its tissue tiles, logging what it chose.
// Throws InputError for a file that is not a slide, a missing level, and what options
// require (require_mpp, require_tissue).
ScanPlan plan_scan(const fs::path& slide_path, const ScanOptions& options);

// The pixels of one block's tiles, cut from one read of the slide: cells.size() x 96 x 96 x 3.
// Safe to call from several threads at once.
std::vector<std::uint8_t> read_block(const ScanPlan& plan, const std::vector<std::uint32_t>& cells, int stride);

// Writes heatmap.png, tissue.png, tiles.csv, tumour.geojson and summary.json into out_dir
// (which must exist), each atomically, summary.json last; returns the summary. `scored` and
// `scan_seconds` come from the score stage.
nlohmann::json write_scan_outputs(const fs::path& out_dir, ScanPlan& plan, const ScanOptions& options, std::size_t scored,
                                  double scan_seconds);

// The files write_scan_outputs leaves, summary.json last.
const std::vector<std::string>& scan_output_files();

// One line for the log: tiles, speed, areas, the call.
std::string describe_scan(const nlohmann::json& summary);

}  // namespace histoscan::slide
