#pragma once
// `histoscan scan`: a whole slide into a tumour heatmap. Tissue is found on a thumbnail;
// only tissue tiles are read, by reader threads feeding the network through a bounded
// queue, so memory does not grow with the slide.
#include <filesystem>
#include <string>

#include <c10/core/Device.h>
#include <nlohmann/json.hpp>
#include <torch/nn/modules/container/sequential.h>

namespace histoscan::scan {

namespace fs = std::filesystem;

struct ScanOptions {
  double target_mpp = 0.972;  // microns per network-input pixel (PCam: 96 px at 0.972)
  double slide_mpp = 0;       // level 0's, replacing the slide's own (0: the slide's)
  int level = -1;             // pyramid level to read (-1: chosen from the resolutions)
  int stride = 32;            // input pixels between tiles
  double min_tissue = 0.5;    // fraction of a tile that must be tissue for it to be scored
  int batch = 128;
  int readers = 1;            // threads reading and cutting tiles
  int thumbnail = 2048;       // longer side of the thumbnail (tissue mask and heatmap)
  int top_k = 10;             // summary: mean probability of the k most likely tiles
  double threshold = 0.5;     // tumour at probability >= threshold (regions, area, call)
  int smooth = 2;             // heatmap, regions, area and call use the mean over (2 smooth + 1)^2 cells
  bool progress = true;
  bool overwrite = false;     // write into a non-empty out_dir
  bool tta = false;           // average each tile over its 8 dihedral views
  bool amp = false;           // bfloat16 (model::forward); the network from prepare_inference
};

// Scans `slide_path` with `net` (already on `device`) and writes heatmap.png, tiles.csv,
// tumour.geojson and summary.json into out_dir (created once the slide has opened), each
// atomically.
// Returns the summary. Throws InputError for a file that is not a slide, a missing level.
nlohmann::json scan_slide(torch::nn::Sequential& net, c10::Device device, const fs::path& slide_path,
                          const fs::path& out_dir, const ScanOptions& options);

}  // namespace histoscan::scan
