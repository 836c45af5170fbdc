#pragma once
// A whole-slide image: read through OpenSlide (Aperio .svs, pyramidal TIFF, Hamamatsu .ndpi,
// MIRAX .mrxs, ...) or, for a plain image OpenSlide does not open (PNG, JPEG, a striped
// TIFF), decoded whole by OpenCV as a one-level slide.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <opencv2/core/mat.hpp>

namespace histoscan::slide {

namespace fs = std::filesystem;

struct Level {
  std::int64_t width = 0, height = 0;
  double downsample = 1;  // level-0 pixels per pixel of this level
};

class Slide {
 public:
  // Throws InputError naming the file when it is missing, unreadable or not an image.
  static Slide open(const fs::path& path);
  Slide(Slide&&) noexcept;
  Slide& operator=(Slide&&) noexcept;
  ~Slide();

  const fs::path& path() const { return path_; }
  const std::string& vendor() const { return vendor_; }  // OpenSlide's ("aperio", "generic-tiff") or "image"
  const std::vector<Level>& levels() const { return levels_; }
  // Microns per level-0 pixel (x), from openslide.mpp-x or the TIFF resolution tags; 0 when unknown.
  double mpp() const { return mpp_; }

  // RGB pixels (CV_8UC3) of a w x h region of `level` whose top-left corner is (x0, y0) in
  // level-0 coordinates. Outside the slide and transparent pixels read as white.
  // Safe to call from several threads at once.
  cv::Mat read(int level, std::int64_t x0, std::int64_t y0, int w, int h) const;

  // The whole slide, at most max_side pixels on its longer side (RGB), built tile by tile
  // from the coarsest level that has at least that many, so memory stays bounded. `scale` receives thumbnail
  // pixels per level-0 pixel.
  cv::Mat thumbnail(int max_side, double* scale) const;

 private:
  Slide() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  fs::path path_;
  std::string vendor_;
  std::vector<Level> levels_;
  double mpp_ = 0;
};

}  // namespace histoscan::slide

namespace histoscan::slide {

// How a slide is read to give the network pixels of target_mpp microns.
struct ReadPlan {
  int level = 0;                // pyramid level read
  double level_downsample = 1;  // its downsample
  double slide_mpp = 0;         // level 0's microns per pixel, as used
  std::string mpp_source;       // "slide", "--slide-mpp" or "assumed" (level 0 taken to be at target_mpp)
  double input_to_level0 = 1;   // level-0 pixels per network-input pixel
  double read_scale = 1;        // level pixels per input pixel (1: read as is; above 1: shrunk)
};

// Chooses the finest level that is not finer than needed, so regions are read at about
// the network's resolution and shrunk a little at most; `level` >= 0 forces one (InputError
// naming --level when the slide has no such level), slide_mpp > 0 replaces the slide's own.
ReadPlan plan_read(const Slide& slide, double target_mpp, int level = -1, double slide_mpp = 0);

}  // namespace histoscan::slide
