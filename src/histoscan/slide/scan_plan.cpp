#include "histoscan/slide/scan_plan.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>

#include <opencv2/imgproc.hpp>

#include "histoscan/data/image_io.h"
#include "histoscan/predict/views.h"
#include "histoscan/util/atomic_file.h"
#include "histoscan/util/error.h"
#include "histoscan/util/log.h"
#include "histoscan/util/sysinfo.h"

namespace histoscan::slide {

void check_scan_options(const ScanOptions& o) {
  if (o.stride < 1 || o.stride > data::kPatchSide) throw InputError("--stride " + std::to_string(o.stride) + ": must be 1 to 96");
  if (o.min_tissue < 0 || o.min_tissue > 1) throw InputError("--min-tissue: must be between 0 and 1");
  if (o.tissue_threshold > 255)
    throw InputError("--tissue-threshold " + format_number(o.tissue_threshold) + ": must be 0 to 255 (HSV saturation)");
  if (o.batch < 1) throw InputError("--batch: must be at least 1");
  predict::check_views(o.views);
  if (o.readers < 1) throw InputError("--readers: must be at least 1");
  if (o.thumbnail < 64) throw InputError("--thumbnail: must be at least 64 pixels");
  if (o.top_k < 1) throw InputError("--top-k: must be at least 1");
  if (o.smooth < 0) throw InputError("--smooth: must be 0 (none) or a radius in tiles");
  if (!(o.threshold >= 0 && o.threshold <= 1)) throw InputError("--threshold: must be between 0 and 1");
}

namespace {

// The tissue tiles of the grid, grouped by kScanBlock x kScanBlock blocks.
std::vector<std::vector<std::uint32_t>> tissue_blocks(const ScanGrid& grid, const std::vector<float>& fraction, double min_tissue,
                                                      std::size_t* tiles) {
  std::vector<std::vector<std::uint32_t>> blocks;
  const int bx_n = (grid.nx + kScanBlock - 1) / kScanBlock, by_n = (grid.ny + kScanBlock - 1) / kScanBlock;
  *tiles = 0;
  for (int bj = 0; bj < by_n; ++bj)
    for (int bi = 0; bi < bx_n; ++bi) {
      std::vector<std::uint32_t> cells;
      for (int j = bj * kScanBlock; j < std::min(grid.ny, (bj + 1) * kScanBlock); ++j)
        for (int i = bi * kScanBlock; i < std::min(grid.nx, (bi + 1) * kScanBlock); ++i) {
          const float f = fraction[std::size_t(j) * grid.nx + i];
          if (f >= min_tissue && f > 0) cells.push_back(static_cast<std::uint32_t>(std::size_t(j) * grid.nx + i));
        }
      *tiles += cells.size();
      if (!cells.empty()) blocks.push_back(std::move(cells));
    }
  return blocks;
}

// The thumbnail's longer side: --thumbnail, but never finer than kThumbPerStride pixels a
// tile stride. A slide of a few thousand pixels would otherwise get a thumbnail at full
// resolution, whose mask, heatmap and PNGs cost more than scoring its tiles; cells drawn 16
// pixels wide show all the tiles can.
constexpr double kThumbPerStride = 16;
int thumbnail_side(const Level& level0, double input_to_level0, const ScanOptions& o) {
  const double longer = double(std::max(level0.width, level0.height));
  const double useful = std::ceil(longer * kThumbPerStride / (o.stride * input_to_level0));
  return static_cast<int>(std::min<double>(o.thumbnail, std::max(64.0, useful)));
}

}  // namespace

ScanPlan plan_scan(const fs::path& slide_path, const ScanOptions& o) {
  check_scan_options(o);
  auto started = std::chrono::steady_clock::now();
  auto slide = Slide::open(slide_path);
  auto read = plan_read(slide, o.target_mpp, o.level, o.slide_mpp);
  if (read.mpp_source == "assumed") {
    if (o.require_mpp)
      throw InputError(slide_path.string() +
                       " records no microns per pixel; give it in the manifest's mpp column or with --slide-mpp");
    log::warn(slide_path.string() + " records no microns per pixel; reading level 0 as if it were " +
              format_number(o.target_mpp) + " µm/px (give --slide-mpp if it is not)");
  }
  if (read.read_scale < 0.99)
    log::warn("--level " + std::to_string(read.level) + " is coarser than the network's " + format_number(o.target_mpp) +
              " µm/px: tiles are enlarged " + format_number(1 / read.read_scale) + " times");
  const auto& level0 = slide.levels()[0];
  log::info("slide " + slide_path.string() + " (" + slide.vendor() + ", " + std::to_string(level0.width) + "x" +
            std::to_string(level0.height) + ", " + std::to_string(slide.levels().size()) + " levels, " +
            format_number(read.slide_mpp) + " µm/px " + read.mpp_source + "); reading level " + std::to_string(read.level) +
            (read.read_scale == 1.0 ? std::string(" as is") : " shrunk " + format_number(read.read_scale) + " times"));

  ScanPlan plan{std::move(slide), read, {}, 0, {}, {}, {}, 0, started};
  plan.thumb = plan.slide.thumbnail(thumbnail_side(level0, read.input_to_level0, o), &plan.thumb_scale);
  plan.tissue = find_tissue(plan.thumb, 20, o.tissue_threshold);
  plan.grid = make_grid(level0.width, level0.height, read.input_to_level0, o.stride);
  plan.grid.level = read.level;
  plan.grid.target_mpp = o.target_mpp;
  plan.blocks = tissue_blocks(plan.grid, tissue_fractions(plan.grid, plan.tissue, plan.thumb_scale), o.min_tissue, &plan.tiles);
  const std::string where = slide_path.string() + ": ";
  if (plan.grid.nx == 0 || plan.grid.ny == 0) {
    std::string what =
        "smaller than one " + std::to_string(data::kPatchSide) + "-pixel tile at " + format_number(o.target_mpp) + " µm/px";
    if (o.require_tissue) throw InputError(where + what + "; nothing to score");
    log::warn(where + what + "; nothing to score, the heatmap is empty");
  } else if (plan.tiles == 0) {
    std::string what =
        "no tissue found (saturation threshold " + format_number(plan.tissue.threshold) + ", " + plan.tissue.rule + ")";
    if (o.require_tissue) throw InputError(where + what + "; check tissue.png of a scan with --tissue-threshold lower");
    log::warn(where + what + "; the heatmap is empty");
  } else {
    log::info(std::to_string(plan.tiles) + " tissue tiles of " + std::to_string(std::size_t(plan.grid.nx) * plan.grid.ny) +
              " (stride " + std::to_string(o.stride) + " px at " + format_number(o.target_mpp) + " µm/px; saturation above " +
              format_number(plan.tissue.threshold) + ", " + plan.tissue.rule + ")");
  }
  plan.plan_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return plan;
}

std::vector<std::uint8_t> read_block(const ScanPlan& plan, const std::vector<std::uint32_t>& cells, int stride) {
  const int P = data::kPatchSide;
  const auto& grid = plan.grid;
  int i0 = grid.nx, j0 = grid.ny, i1 = 0, j1 = 0;  // the tissue tiles' bounding box
  for (auto c : cells) {
    int i = static_cast<int>(c % grid.nx), j = static_cast<int>(c / grid.nx);
    i0 = std::min(i0, i), j0 = std::min(j0, j), i1 = std::max(i1, i), j1 = std::max(j1, j);
  }
  // The block's region in input pixels, read at the plan's level and brought to input scale.
  const double scale = plan.read.read_scale;
  int wI = (i1 - i0) * stride + P, hI = (j1 - j0) * stride + P;
  int wL = static_cast<int>(std::ceil(wI * scale - 1e-9)), hL = static_cast<int>(std::ceil(hI * scale - 1e-9));
  cv::Mat region = plan.slide.read(plan.read.level, grid.x0(i0), grid.y0(j0), wL, hL);
  if (wL != wI || hL != hI) {
    cv::Mat scaled;
    cv::resize(region, scaled, cv::Size(wI, hI), 0, 0, scale > 1 ? cv::INTER_AREA : cv::INTER_LINEAR);
    region = scaled;
  }
  std::vector<std::uint8_t> pixels(cells.size() * data::kPatchBytes);
  for (std::size_t k = 0; k < cells.size(); ++k) {
    int i = static_cast<int>(cells[k] % grid.nx), j = static_cast<int>(cells[k] / grid.nx);
    cv::Mat dst(P, P, CV_8UC3, pixels.data() + k * data::kPatchBytes);
    region(cv::Rect((i - i0) * stride, (j - j0) * stride, P, P)).copyTo(dst);
  }
  return pixels;
}

const std::vector<std::string>& scan_output_files() {
  static const std::vector<std::string> files = {"tiles.csv", "heatmap.png", "tissue.png", "tumour.geojson", "summary.json"};
  return files;
}

nlohmann::json write_scan_outputs(const fs::path& out_dir, ScanPlan& plan, const ScanOptions& o, std::size_t scored,
                                  double scan_seconds) {
  const auto write_started = std::chrono::steady_clock::now();
  auto& grid = plan.grid;
  // tiles.csv has the network's probabilities; the rest, the smoothed ones.
  double max_tile = 0;
  for (float p : grid.probability)
    if (!std::isnan(p)) max_tile = std::max(max_tile, double(p));
  auto smoothed = smooth_probabilities(grid, o.smooth);
  write_tiles_csv(out_dir / "tiles.csv", grid, o.smooth > 0 ? &smoothed : nullptr);
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
  double thumb_px_mm2 = std::pow(plan.read.slide_mpp * 1e-3 / plan.thumb_scale, 2);
  double max_p = scored_probs.empty() ? 0.0 : double(scored_probs.front());

  write_png(out_dir / "heatmap.png", render_heatmap(plan.thumb, plan.thumb_scale, grid));
  write_png(out_dir / "tissue.png", render_tissue(plan.thumb, plan.tissue));
  auto geo = tumour_geojson(grid, o.threshold, grid.cell_area_mm2());
  write_file_atomic(out_dir / "tumour.geojson", [&](std::ostream& f) { f << geo.dump() << '\n'; });
  const auto& level0 = plan.slide.levels()[0];
  nlohmann::json summary = {
      {"slide", fs::absolute(plan.slide.path()).string()},
      {"vendor", plan.slide.vendor()},
      {"width", level0.width},
      {"height", level0.height},
      {"levels", plan.slide.levels().size()},
      {"slide_mpp", plan.read.slide_mpp},
      {"mpp_source", plan.read.mpp_source},
      {"target_mpp", o.target_mpp},
      {"level", plan.read.level},
      {"level_downsample", plan.read.level_downsample},
      {"read_scale", plan.read.read_scale},
      {"stride", o.stride},
      {"tile_level0_px", data::kPatchSide * plan.read.input_to_level0},
      {"min_tissue", o.min_tissue},
      {"tissue_threshold_saturation", plan.tissue.threshold},
      {"tissue_background_saturation", plan.tissue.background},
      {"tissue_threshold_rule", plan.tissue.rule},
      {"tiles_total", std::size_t(grid.nx) * grid.ny},
      {"tiles_scored", scored},
      {"tissue_area_mm2", double(plan.tissue.pixels) * thumb_px_mm2},
      {"tumour_area_mm2", double(tumour_cells) * grid.cell_area_mm2()},
      {"tumour_regions", geo["features"].size()},
      {"smooth", o.smooth},
      {"max_tile_probability", max_tile},
      {"max_probability", max_p},
      {"top_k", k},
      {"top_k_mean_probability", top_mean},
      {"threshold", o.threshold},
      {"call", scored > 0 && top_mean >= o.threshold ? "tumour" : "no tumour"},  // the top-k mean, not one tile
      {"seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - plan.started).count()},
      {"plan_seconds", plan.plan_seconds},
      {"scan_seconds", scan_seconds},
      {"write_seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - write_started).count()},
      {"tiles_per_second", scan_seconds > 0 ? double(scored) / scan_seconds : 0.0},
      {"tta", o.views > 1},
      {"tta_views", o.views},
      {"readers", o.readers},
      {"batch", o.batch},
      {"peak_rss_mib", peak_rss_mib()},
  };
  write_file_atomic(out_dir / "summary.json", [&](std::ostream& f) { f << summary.dump(2) << '\n'; });
  return summary;
}

std::string describe_scan(const nlohmann::json& s) {
  char line[320];
  std::snprintf(line, sizeof line, "%zu tiles in %.1f s (%.0f tiles/s); tissue %.2f mm², tumour %.2f mm² in %zu regions; ",
                s["tiles_scored"].get<std::size_t>(), s["scan_seconds"].get<double>(), s["tiles_per_second"].get<double>(),
                s["tissue_area_mm2"].get<double>(), s["tumour_area_mm2"].get<double>(), s["tumour_regions"].get<std::size_t>());
  std::snprintf(line + std::strlen(line), sizeof line - std::strlen(line), "max p %.3f, top-%zu mean %.3f: %s",
                s["max_probability"].get<double>(), s["top_k"].get<std::size_t>(), s["top_k_mean_probability"].get<double>(),
                s["call"].get<std::string>().c_str());
  return line;
}

}  // namespace histoscan::slide
