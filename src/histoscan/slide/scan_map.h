#pragma once
// What `scan` computes and writes, without LibTorch: the tissue mask of a thumbnail, the
// grid of tiles and their tumour probabilities, and the outputs drawn from them
// (heatmap.png, tiles.csv, tumour.geojson).
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>
#include <opencv2/core/mat.hpp>

namespace histoscan::slide {

namespace fs = std::filesystem;

// Tissue on an RGB thumbnail: pixels whose (blurred) HSV saturation is above a threshold;
// 255 = tissue. Glass is the brightest part of a slide and nearly colourless, so by default
// the threshold sits kTissueMargin above the glass's saturation (the median over the
// brightest 2% of pixels), never below min_saturation: unlike Otsu's threshold, it does not
// move up into the tissue when a slide is mostly tissue, so pale tissue (fat, loose stroma)
// stays in. `fixed` >= 0 (--tissue-threshold) sets the threshold instead.
struct TissueMask {
  cv::Mat mask;            // CV_8U, thumbnail size
  double threshold = 0;    // the saturation threshold used (0..255)
  double background = 0;   // saturation of the glass, as estimated (0..255)
  std::string rule;        // how the threshold was set: "glass + 15, at least 20" or "--tissue-threshold"
  std::size_t pixels = 0;  // tissue pixels
};
constexpr double kTissueMargin = 15;
TissueMask find_tissue(const cv::Mat& rgb, double min_saturation = 20, double fixed = -1);

// The thumbnail with the tissue tinted green and outlined (tissue.png).
cv::Mat render_tissue(const cv::Mat& thumb_rgb, const TissueMask& tissue);

// The tiles of a scan. The network sees `patch` x `patch` pixels at its own resolution
// ("input pixels", target_mpp microns each); tile (i, j) starts at input pixel
// (i * stride, j * stride), and its centre stride x stride square is the cell it colours.
struct ScanGrid {
  int patch = 96;
  int stride = 32;
  int nx = 0, ny = 0;              // tiles across and down
  double input_to_level0 = 1;      // level-0 pixels per input pixel
  int level = 0;                   // pyramid level read
  double target_mpp = 0.972;       // microns per input pixel
  std::vector<float> probability;  // nx * ny, row-major; NaN where not scored

  static constexpr float kNotScored = std::numeric_limits<float>::quiet_NaN();
  bool scored(int i, int j) const { return !std::isnan(probability[std::size_t(j) * nx + i]); }
  float at(int i, int j) const { return probability[std::size_t(j) * nx + i]; }
  // Level-0 coordinates of tile (i, j)'s top-left corner.
  std::int64_t x0(int i) const { return std::llround(double(i) * stride * input_to_level0); }
  std::int64_t y0(int j) const { return std::llround(double(j) * stride * input_to_level0); }
  double cell_offset() const { return (patch - stride) / 2.0; }  // input pixels from a tile's corner to its cell
  double cell_area_mm2() const { return std::pow(stride * target_mpp * 1e-3, 2); }
};

// The grid for a slide of level0_w x level0_h pixels read at input_to_level0.
ScanGrid make_grid(std::int64_t level0_w, std::int64_t level0_h, double input_to_level0, int stride, int patch = 96);

// Fraction of tissue under each tile (nx * ny), from the mask of a thumbnail of
// `thumb_scale` thumbnail pixels per level-0 pixel.
std::vector<float> tissue_fractions(const ScanGrid& grid, const TissueMask& tissue, double thumb_scale);

// Each scored cell's probability averaged with the scored cells within `radius` cells
// (a (2 radius + 1)^2 window): tumour is contiguous tissue, a network's false alarms are
// mostly scattered single tiles. Radius 0 returns the probabilities unchanged.
std::vector<float> smooth_probabilities(const ScanGrid& grid, int radius);

// tiles.csv: x,y,level,probability[,smoothed] (x, y: level-0 top-left corner), scored tiles in
// row order; probability is the network's for the tile, smoothed (when given) the value
// the heatmap and regions use.
void write_tiles_csv(const fs::path& path, const ScanGrid& grid, const std::vector<float>* smoothed = nullptr);

// The thumbnail with each scored cell coloured by its probability (turbo colour map, half
// transparent) and a legend at the right.
cv::Mat render_heatmap(const cv::Mat& thumb_rgb, double thumb_scale, const ScanGrid& grid);

// Regions of cells with probability >= threshold as a GeoJSON FeatureCollection of
// polygons (holes kept) in level-0 pixel coordinates, one Feature per connected region with
// its area and maximum and mean probability; QuPath imports it.
nlohmann::json tumour_geojson(const ScanGrid& grid, double threshold, double mm2_per_cell);

// Writes an RGB image as PNG atomically.
void write_png(const fs::path& path, const cv::Mat& rgb);

}  // namespace histoscan::slide
