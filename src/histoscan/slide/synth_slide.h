#pragma once
// Writing slides: a tiled, pyramidal, JPEG-compressed TIFF that OpenSlide reads as a
// "generic-tiff" slide, and test slides built from labelled patches whose tumour region is
// known (`histoscan synth-slide`).
#include <cstdint>
#include <filesystem>
#include <functional>

#include <nlohmann/json_fwd.hpp>
#include <opencv2/core/mat.hpp>

#include "histoscan/data/source.h"

namespace histoscan::slide {

namespace fs = std::filesystem;

struct PyramidOptions {
  int tile = 256;      // tile side, pixels
  int quality = 90;    // JPEG quality
  double mpp = 0;      // microns per level-0 pixel, written as the TIFF resolution (0: none)
  int min_side = 512;  // the coarsest level is the last one whose longer side is at least this
};

// Fills `out` (CV_8UC3 RGB, already sized) with the pixels of `region` of pyramid level
// `level` (downsample 2^level).
using RegionFill = std::function<void(int level, const cv::Rect& region, cv::Mat& out)>;

// Writes a width x height (level 0) pyramid atomically, level k at downsample 2^k, tile by
// tile: memory stays a few tiles whatever the size. BigTIFF, so any size fits.
void write_pyramidal_tiff(const fs::path& path, std::int64_t width, std::int64_t height, const RegionFill& fill,
                          const PyramidOptions& options = {});

struct SynthSlideSpec {
  int cols = 24, rows = 16;            // mosaic of 96x96 patches
  cv::Rect tumour{13, 5, 8, 6};        // cells (in the mosaic) filled with tumour patches
  double patch_mpp = 0.972;            // the patches' resolution (PCam)
  double slide_mpp = 0.486;            // level 0's; patches are scaled by patch_mpp / slide_mpp
  std::int64_t width = 0, height = 0;  // level-0 canvas; 0: the mosaic plus a margin
  std::uint64_t seed = 1;
};

// What was written: level-0 rectangles of the tumour and of the whole mosaic, as JSON
// {"tumour": [x, y, w, h], "mosaic": [...], "tissue_cells", "tumour_cells", "mpp", ...}.
// Tissue is the ellipse inscribed in the mosaic; outside it is glass (near-white). Patches
// come from `index` (labelled; tumour cells get label-1 patches, other tissue label 0, drawn
// at random with `seed`), or are synthetic (data::synth_patch) when `index` is null.
nlohmann::json write_synth_slide(const fs::path& path, const data::PatchIndex* index, const SynthSlideSpec& spec);

}  // namespace histoscan::slide
