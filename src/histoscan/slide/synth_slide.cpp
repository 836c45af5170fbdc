#include "histoscan/slide/synth_slide.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <random>
#include <vector>

#include <tiffio.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgproc.hpp>

#include "histoscan/data/store.h"
#include "histoscan/data/synth.h"
#include "histoscan/util/atomic_file.h"
#include "histoscan/util/error.h"

namespace histoscan::slide {

namespace {

struct TiffCloser {
  void operator()(TIFF* t) const {
    if (t) TIFFClose(t);
  }
};

}  // namespace

void write_pyramidal_tiff(const fs::path& path, std::int64_t width, std::int64_t height, const RegionFill& fill,
                          const PyramidOptions& options) {
  if (width <= 0 || height <= 0) throw InputError(path.string() + ": a slide needs a positive size");
  AtomicPath out(path);
  TIFFSetWarningHandler(nullptr);
  std::unique_ptr<TIFF, TiffCloser> tif(TIFFOpen(out.temp().c_str(), "w8"));
  if (!tif) throw InputError("cannot write " + path.string() + "; check the folder's permissions");
  const int t = options.tile;
  std::vector<std::uint8_t> buf(std::size_t(t) * t * 3);
  for (int level = 0;; ++level) {
    std::int64_t d = std::int64_t(1) << level;
    std::int64_t w = (width + d - 1) / d, h = (height + d - 1) / d;
    if (level > 0 && std::max(w, h) < options.min_side) break;
    TIFF* f = tif.get();
    TIFFSetField(f, TIFFTAG_SUBFILETYPE, level == 0 ? 0 : FILETYPE_REDUCEDIMAGE);
    TIFFSetField(f, TIFFTAG_IMAGEWIDTH, static_cast<std::uint32_t>(w));
    TIFFSetField(f, TIFFTAG_IMAGELENGTH, static_cast<std::uint32_t>(h));
    TIFFSetField(f, TIFFTAG_BITSPERSAMPLE, 8);
    TIFFSetField(f, TIFFTAG_SAMPLESPERPIXEL, 3);
    TIFFSetField(f, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
    TIFFSetField(f, TIFFTAG_TILEWIDTH, t);
    TIFFSetField(f, TIFFTAG_TILELENGTH, t);
    TIFFSetField(f, TIFFTAG_COMPRESSION, COMPRESSION_JPEG);
    TIFFSetField(f, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_YCBCR);
    TIFFSetField(f, TIFFTAG_JPEGQUALITY, options.quality);
    TIFFSetField(f, TIFFTAG_JPEGCOLORMODE, JPEGCOLORMODE_RGB);
    if (level == 0) TIFFSetField(f, TIFFTAG_IMAGEDESCRIPTION, "histoscan test slide");
    if (options.mpp > 0) {
      float per_cm = static_cast<float>(1e4 / (options.mpp * double(d)));
      TIFFSetField(f, TIFFTAG_XRESOLUTION, per_cm);
      TIFFSetField(f, TIFFTAG_YRESOLUTION, per_cm);
      TIFFSetField(f, TIFFTAG_RESOLUTIONUNIT, RESUNIT_CENTIMETER);
    }
    for (std::int64_t y = 0; y < h; y += t) {
      for (std::int64_t x = 0; x < w; x += t) {
        cv::Mat tile(t, t, CV_8UC3, buf.data());
        tile.setTo(cv::Scalar(255, 255, 255));
        int rw = static_cast<int>(std::min<std::int64_t>(t, w - x)), rh = static_cast<int>(std::min<std::int64_t>(t, h - y));
        cv::Mat part = tile(cv::Rect(0, 0, rw, rh));
        fill(level, cv::Rect(static_cast<int>(x), static_cast<int>(y), rw, rh), part);
        if (TIFFWriteTile(f, buf.data(), static_cast<std::uint32_t>(x), static_cast<std::uint32_t>(y), 0, 0) < 0)
          throw InputError("writing " + path.string() + " failed (disk full?)");
      }
    }
    if (!TIFFWriteDirectory(f)) throw InputError("writing " + path.string() + " failed (disk full?)");
  }
  tif.reset();
  out.commit();
}

namespace {

void check_spec(const SynthSlideSpec& spec) {
  const cv::Rect grid(0, 0, spec.cols, spec.rows);
  if (spec.cols < 3 || spec.rows < 3) throw InputError("--cols and --rows: at least 3 patches each");
  if ((spec.tumour & grid) != spec.tumour || spec.tumour.area() == 0)
    throw InputError("--tumour: the tumour block must lie inside the " + std::to_string(spec.cols) + "x" +
                     std::to_string(spec.rows) + " mosaic");
  if (!(spec.slide_mpp > 0) || !(spec.patch_mpp > 0)) throw InputError("--slide-mpp: must be positive");
}

// Each mosaic cell, row by row: -1 glass, 0 normal tissue, 1 tumour. Tissue is the ellipse
// inscribed in the mosaic, and the tumour block wherever it reaches.
std::vector<int> tissue_cells(const SynthSlideSpec& spec) {
  std::vector<int> cell(std::size_t(spec.cols) * spec.rows, -1);
  const double cx = spec.cols / 2.0, cy = spec.rows / 2.0;
  for (int r = 0; r < spec.rows; ++r)
    for (int c = 0; c < spec.cols; ++c) {
      const double dx = (c + 0.5 - cx) / cx, dy = (r + 0.5 - cy) / cy;
      const bool tumour = spec.tumour.contains(cv::Point(c, r));
      if (tumour || dx * dx + dy * dy <= 1.0) cell[std::size_t(r) * spec.cols + c] = tumour ? 1 : 0;
    }
  return cell;
}

// need[label] patches of each label: drawn at random from the labelled index, or synthetic.
std::array<std::vector<cv::Mat>, 2> draw_patches(const data::PatchIndex* index, const std::size_t need[2], std::mt19937_64& rng) {
  const int P = data::kPatchSide;
  std::array<std::vector<cv::Mat>, 2> patches;
  if (!index) {
    for (int label : {0, 1})
      for (std::size_t i = 0; i < need[label]; ++i) {
        cv::Mat m(P, P, CV_8UC3);
        data::synth_patch(label == 1, rng(), m.data);
        patches[label].push_back(m);
      }
    return patches;
  }
  std::vector<std::size_t> rows[2];
  for (std::size_t i = 0; i < index->entries.size(); ++i) {
    int label = index->entries[i].label;
    if (label == 0 || label == 1) rows[label].push_back(i);
  }
  for (int label : {0, 1}) {
    if (rows[label].size() < need[label])
      throw InputError(index->data.string() + ": has " + std::to_string(rows[label].size()) + " patches labelled " +
                       std::to_string(label) + ", the slide needs " + std::to_string(need[label]) + "; use fewer --cols/--rows");
    std::shuffle(rows[label].begin(), rows[label].end(), rng);
    rows[label].resize(need[label]);
    data::LoadOptions load;
    load.progress = false;
    auto store = data::load_patches(*index, rows[label], load);
    for (std::size_t i = 0; i < store.size(); ++i)
      patches[label].push_back(cv::Mat(P, P, CV_8UC3, const_cast<std::uint8_t*>(store.image(i))).clone());
  }
  return patches;
}

// The mosaic at the patches' resolution: each tissue cell its patch, glass elsewhere.
cv::Mat mosaic_of(const SynthSlideSpec& spec, const std::vector<int>& cell, const std::array<std::vector<cv::Mat>, 2>& patches) {
  const int P = data::kPatchSide;
  cv::Mat mosaic(spec.rows * P, spec.cols * P, CV_8UC3, cv::Scalar(242, 242, 242));
  std::size_t used[2] = {0, 0};
  for (int r = 0; r < spec.rows; ++r)
    for (int c = 0; c < spec.cols; ++c) {
      const int v = cell[std::size_t(r) * spec.cols + c];
      if (v >= 0) patches[v][used[v]++].copyTo(mosaic(cv::Rect(c * P, r * P, P, P)));
    }
  return mosaic;
}

}  // namespace

nlohmann::json write_synth_slide(const fs::path& path, const data::PatchIndex* index, const SynthSlideSpec& spec) {
  const int P = data::kPatchSide;
  check_spec(spec);
  const std::vector<int> cell = tissue_cells(spec);
  std::size_t need[2] = {0, 0};
  for (int v : cell)
    if (v >= 0) ++need[v];
  std::mt19937_64 rng(spec.seed);
  const cv::Mat mosaic = mosaic_of(spec, cell, draw_patches(index, need, rng));

  // The mosaic at level 0's resolution, centred on a canvas of glass.
  const double k = spec.patch_mpp / spec.slide_mpp;  // level-0 pixels per patch pixel
  std::vector<cv::Mat> pyramid{};
  {
    cv::Mat level0;
    cv::Size size(static_cast<int>(std::lround(mosaic.cols * k)), static_cast<int>(std::lround(mosaic.rows * k)));
    cv::resize(mosaic, level0, size, 0, 0, k > 1 ? cv::INTER_CUBIC : cv::INTER_AREA);
    pyramid.push_back(level0);
  }
  const std::int64_t margin = static_cast<std::int64_t>(std::lround(2 * P * k));
  std::int64_t W = spec.width > 0 ? spec.width : pyramid[0].cols + 2 * margin;
  std::int64_t H = spec.height > 0 ? spec.height : pyramid[0].rows + 2 * margin;
  if (W < pyramid[0].cols || H < pyramid[0].rows)
    throw InputError("--width/--height: the canvas must hold the " + std::to_string(pyramid[0].cols) + "x" +
                     std::to_string(pyramid[0].rows) + " mosaic");
  const std::int64_t ox = (W - pyramid[0].cols) / 2, oy = (H - pyramid[0].rows) / 2;

  // Everything outside the mosaic is glass.
  RegionFill fill = [&](int level, const cv::Rect& region, cv::Mat& out) {
    out.setTo(cv::Scalar(242, 242, 242));
    while (static_cast<int>(pyramid.size()) <= level) {
      cv::Mat half;
      cv::resize(pyramid.back(), half, cv::Size((pyramid.back().cols + 1) / 2, (pyramid.back().rows + 1) / 2), 0, 0,
                 cv::INTER_AREA);
      pyramid.push_back(half);
    }
    const cv::Mat& m = pyramid[level];
    std::int64_t d = std::int64_t(1) << level;
    cv::Rect at(static_cast<int>(ox / d), static_cast<int>(oy / d), m.cols, m.rows);  // mosaic in this level
    cv::Rect both = at & region;
    if (both.area() > 0)
      m(cv::Rect(both.x - at.x, both.y - at.y, both.width, both.height))
          .copyTo(out(cv::Rect(both.x - region.x, both.y - region.y, both.width, both.height)));
  };
  PyramidOptions options;
  options.mpp = spec.slide_mpp;
  write_pyramidal_tiff(path, W, H, fill, options);

  double cell0 = P * k;
  auto rect = [&](const cv::Rect& cells) {
    return nlohmann::json::array({ox + cells.x * cell0, oy + cells.y * cell0, cells.width * cell0, cells.height * cell0});
  };
  return {{"slide", path.string()},
          {"width", W},
          {"height", H},
          {"mpp", spec.slide_mpp},
          {"tumour", rect(spec.tumour)},
          {"mosaic", rect(cv::Rect(0, 0, spec.cols, spec.rows))},
          {"tissue_cells", need[0] + need[1]},
          {"tumour_cells", need[1]},
          {"patch_level0_px", cell0},
          {"source", index ? index->describe() : std::string("synthetic patches")},
          {"seed", spec.seed}};
}

}  // namespace histoscan::slide
