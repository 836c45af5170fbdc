#include "histoscan/slide/slide.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <system_error>

#include <openslide.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "histoscan/data/image_io.h"
#include "histoscan/util/error.h"

namespace histoscan::slide {

struct Slide::Impl {
  openslide_t* osr = nullptr;
  cv::Mat image;  // RGB, when OpenSlide does not read the file
  ~Impl() {
    if (osr) openslide_close(osr);
  }
};

Slide::Slide(Slide&&) noexcept = default;
Slide& Slide::operator=(Slide&&) noexcept = default;
Slide::~Slide() = default;

namespace {

// Microns per pixel from OpenSlide's own property, else from the TIFF resolution tags.
double read_mpp(openslide_t* osr) {
  auto prop = [&](const char* name) -> const char* { return openslide_get_property_value(osr, name); };
  if (const char* v = prop(OPENSLIDE_PROPERTY_NAME_MPP_X)) {
    double mpp = std::atof(v);
    if (mpp > 0 && std::isfinite(mpp)) return mpp;
  }
  const char* res = prop("tiff.XResolution");
  const char* unit = prop("tiff.ResolutionUnit");
  if (!res || !unit) return 0;
  double per_unit = std::atof(res);
  if (!(per_unit > 0) || !std::isfinite(per_unit)) return 0;
  std::string u = unit;
  if (u == "centimeter") return 1e4 / per_unit;
  if (u == "inch") return 25400.0 / per_unit;
  return 0;
}

}  // namespace

Slide Slide::open(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw InputError(path.string() + ": no such slide; check the path");
  if (fs::is_directory(path, ec))
    throw InputError(path.string() + ": is a folder; give a slide file (.svs, .tif, .ndpi, .mrxs, ...)");
  Slide s;
  s.path_ = path;
  s.impl_ = std::make_unique<Impl>();
  if (const char* vendor = openslide_detect_vendor(path.c_str())) {
    openslide_t* osr = openslide_open(path.c_str());
    if (osr) {
      s.impl_->osr = osr;
      if (const char* err = openslide_get_error(osr))
        throw InputError(path.string() + ": OpenSlide cannot read this " + vendor + " slide (" + err +
                         "); the file is damaged or incomplete");
      s.vendor_ = vendor;
      int32_t n = openslide_get_level_count(osr);
      for (int32_t i = 0; i < n; ++i) {
        Level level;
        openslide_get_level_dimensions(osr, i, &level.width, &level.height);
        level.downsample = openslide_get_level_downsample(osr, i);
        s.levels_.push_back(level);
      }
      if (s.levels_.empty() || s.levels_[0].width <= 0 || s.levels_[0].height <= 0)
        throw InputError(path.string() + ": OpenSlide finds no image in this slide; the file is damaged");
      s.mpp_ = read_mpp(osr);
      return s;
    }
  }
  // Not a slide format OpenSlide knows: a plain image, decoded whole.
  data::quiet_image_library();
  cv::Mat bgr;
  try {
    bgr = cv::imread(path.string(), cv::IMREAD_COLOR);
  } catch (const cv::Exception&) {
  }
  if (bgr.empty())
    throw InputError(path.string() +
                     ": not a slide or image histoscan can read (damaged, cut short, or neither a slide OpenSlide knows, "
                     ".svs .tif .ndpi .mrxs .scn .vms .bif, nor a PNG/JPEG/TIFF image); check the file");
  cv::cvtColor(bgr, s.impl_->image, cv::COLOR_BGR2RGB);
  s.vendor_ = "image";
  s.levels_.push_back({s.impl_->image.cols, s.impl_->image.rows, 1.0});
  return s;
}

cv::Mat Slide::read(int level, std::int64_t x0, std::int64_t y0, int w, int h) const {
  cv::Mat out(h, w, CV_8UC3, cv::Scalar(255, 255, 255));
  if (w <= 0 || h <= 0) return out;
  if (impl_->osr) {
    std::vector<std::uint32_t> argb(static_cast<std::size_t>(w) * h);
    openslide_read_region(impl_->osr, argb.data(), x0, y0, level, w, h);
    if (const char* err = openslide_get_error(impl_->osr))
      throw InputError(path_.string() + ": reading level " + std::to_string(level) + " failed (" + err +
                       "); the slide is damaged");
    // Premultiplied ARGB over white: channel + (255 - alpha).
    for (int y = 0; y < h; ++y) {
      auto* row = out.ptr<std::uint8_t>(y);
      const std::uint32_t* src = argb.data() + static_cast<std::size_t>(y) * w;
      for (int x = 0; x < w; ++x) {
        std::uint32_t p = src[x];
        std::uint32_t white = 255 - (p >> 24);
        row[3 * x + 0] = static_cast<std::uint8_t>(((p >> 16) & 255) + white);
        row[3 * x + 1] = static_cast<std::uint8_t>(((p >> 8) & 255) + white);
        row[3 * x + 2] = static_cast<std::uint8_t>((p & 255) + white);
      }
    }
    return out;
  }
  const cv::Mat& img = impl_->image;
  cv::Rect want(static_cast<int>(std::clamp<std::int64_t>(x0, -(1 << 30), 1 << 30)),
                static_cast<int>(std::clamp<std::int64_t>(y0, -(1 << 30), 1 << 30)), w, h);
  cv::Rect have = want & cv::Rect(0, 0, img.cols, img.rows);
  if (have.area() > 0) img(have).copyTo(out(cv::Rect(have.x - want.x, have.y - want.y, have.width, have.height)));
  return out;
}

cv::Mat Slide::thumbnail(int max_side, double* scale) const {
  // The coarsest level still at least max_side pixels on its longer side (else level 0).
  int last = 0;
  for (std::size_t i = 0; i < levels_.size(); ++i)
    if (std::max(levels_[i].width, levels_[i].height) >= max_side) last = static_cast<int>(i);
  const Level& lv = levels_[last];
  double s = std::min(1.0, double(max_side) / double(std::max(lv.width, lv.height)));
  int tw = std::max(1, static_cast<int>(std::lround(lv.width * s)));
  int th = std::max(1, static_cast<int>(std::lround(lv.height * s)));
  cv::Mat thumb(th, tw, CV_8UC3, cv::Scalar(255, 255, 255));
  // Tiles of that level, each shrunk into its place: memory stays a few tiles.
  const int step = 2048;
  for (std::int64_t y = 0; y < lv.height; y += step) {
    for (std::int64_t x = 0; x < lv.width; x += step) {
      int w = static_cast<int>(std::min<std::int64_t>(step, lv.width - x));
      int h = static_cast<int>(std::min<std::int64_t>(step, lv.height - y));
      int dx0 = static_cast<int>(std::lround(x * s)), dy0 = static_cast<int>(std::lround(y * s));
      int dx1 = std::min(tw, static_cast<int>(std::lround((x + w) * s)));
      int dy1 = std::min(th, static_cast<int>(std::lround((y + h) * s)));
      if (dx1 <= dx0 || dy1 <= dy0) continue;
      cv::Mat tile = read(last, static_cast<std::int64_t>(std::llround(x * lv.downsample)),
                          static_cast<std::int64_t>(std::llround(y * lv.downsample)), w, h);
      cv::Mat dst = thumb(cv::Rect(dx0, dy0, dx1 - dx0, dy1 - dy0));
      if (tile.size() == dst.size()) tile.copyTo(dst);
      else cv::resize(tile, dst, dst.size(), 0, 0, cv::INTER_AREA);
    }
  }
  if (scale) *scale = double(tw) / double(levels_[0].width);
  return thumb;
}

}  // namespace histoscan::slide

namespace histoscan::slide {

ReadPlan plan_read(const Slide& slide, double target_mpp, int level, double slide_mpp) {
  if (!(target_mpp > 0)) throw InputError("--mpp: must be a positive number of microns per pixel");
  ReadPlan plan;
  if (slide_mpp > 0) {
    plan.slide_mpp = slide_mpp;
    plan.mpp_source = "--slide-mpp";
  } else if (slide.mpp() > 0) {
    plan.slide_mpp = slide.mpp();
    plan.mpp_source = "slide";
  } else {
    plan.slide_mpp = target_mpp;
    plan.mpp_source = "assumed";
  }
  plan.input_to_level0 = target_mpp / plan.slide_mpp;
  const auto& levels = slide.levels();
  if (level >= 0) {
    if (level >= static_cast<int>(levels.size()))
      throw InputError("--level " + std::to_string(level) + ": " + slide.path().string() + " has levels 0 to " +
                       std::to_string(levels.size() - 1) + "; choose one of those or leave --level out");
    plan.level = level;
  } else {
    plan.level = 0;
    for (std::size_t i = 0; i < levels.size(); ++i)
      if (levels[i].downsample <= plan.input_to_level0 * 1.01) plan.level = static_cast<int>(i);
  }
  plan.level_downsample = levels[plan.level].downsample;
  plan.read_scale = plan.input_to_level0 / plan.level_downsample;
  if (std::abs(plan.read_scale - 1.0) < 0.01) plan.read_scale = 1.0;
  return plan;
}

}  // namespace histoscan::slide
