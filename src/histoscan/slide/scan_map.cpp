#include "histoscan/slide/scan_map.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <ostream>

#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "histoscan/util/atomic_file.h"
#include "histoscan/util/error.h"

namespace histoscan::slide {

TissueMask find_tissue(const cv::Mat& rgb, double min_saturation, double fixed) {
  TissueMask t;
  cv::Mat hsv, channels[3];
  cv::cvtColor(rgb, hsv, cv::COLOR_RGB2HSV);
  cv::split(hsv, channels);
  cv::Mat sat;
  cv::GaussianBlur(channels[1], sat, cv::Size(5, 5), 0);
  // The glass: the whitest 2% of pixels (by their darkest channel: stained tissue is dark in
  // at least one, glass in none), at least one pixel; its median saturation.
  cv::Mat rgb_channels[3], white;
  cv::split(rgb, rgb_channels);
  cv::min(rgb_channels[0], rgb_channels[1], white);
  cv::min(white, rgb_channels[2], white);
  std::array<std::size_t, 256> by_white{};
  for (int y = 0; y < white.rows; ++y) {
    const auto* w = white.ptr<std::uint8_t>(y);
    for (int x = 0; x < white.cols; ++x) ++by_white[w[x]];
  }
  const std::size_t total = static_cast<std::size_t>(white.rows) * white.cols;
  const std::size_t want = std::max<std::size_t>(1, total / 50);
  int cut = 255;
  for (std::size_t n = by_white[255]; cut > 0 && n < want; n += by_white[--cut]) {
  }
  std::array<std::size_t, 256> glass{};
  std::size_t glass_n = 0;
  for (int y = 0; y < white.rows; ++y) {
    const auto* w = white.ptr<std::uint8_t>(y);
    const auto* s = sat.ptr<std::uint8_t>(y);
    for (int x = 0; x < white.cols; ++x)
      if (w[x] >= cut) ++glass[s[x]], ++glass_n;
  }
  for (std::size_t n = 0, k = 0; k < 256 && glass_n; ++k)
    if ((n += glass[k]) * 2 >= glass_n) {
      t.background = double(k);
      break;
    }
  if (fixed >= 0) {
    t.threshold = fixed;
    t.rule = "--tissue-threshold";
  } else {
    t.threshold = std::max(t.background + kTissueMargin, min_saturation);
    t.rule = "glass + " + format_number(kTissueMargin) + ", at least " + format_number(min_saturation);
  }
  cv::threshold(sat, t.mask, t.threshold, 255, cv::THRESH_BINARY);
  // Specks of dust go, small gaps inside tissue close.
  cv::Mat kernel = cv::getStructuringElement(cv::MORPH_ELLIPSE, cv::Size(3, 3));
  cv::morphologyEx(t.mask, t.mask, cv::MORPH_OPEN, kernel);
  cv::morphologyEx(t.mask, t.mask, cv::MORPH_CLOSE, kernel);
  t.pixels = static_cast<std::size_t>(cv::countNonZero(t.mask));
  return t;
}

cv::Mat render_tissue(const cv::Mat& thumb_rgb, const TissueMask& tissue) {
  cv::Mat out = thumb_rgb.clone(), green(thumb_rgb.size(), CV_8UC3, cv::Scalar(0, 170, 0)), tinted;
  cv::addWeighted(thumb_rgb, 0.6, green, 0.4, 0, tinted);
  tinted.copyTo(out, tissue.mask);
  std::vector<std::vector<cv::Point>> contours;
  cv::findContours(tissue.mask.clone(), contours, cv::RETR_LIST, cv::CHAIN_APPROX_SIMPLE);
  cv::drawContours(out, contours, -1, cv::Scalar(0, 100, 0), std::max(1, std::max(out.cols, out.rows) / 1000), cv::LINE_AA);
  return out;
}

ScanGrid make_grid(std::int64_t level0_w, std::int64_t level0_h, double input_to_level0, int stride, int patch) {
  ScanGrid g;
  g.patch = patch;
  g.stride = stride;
  g.input_to_level0 = input_to_level0;
  double w = double(level0_w) / input_to_level0, h = double(level0_h) / input_to_level0;  // input pixels
  g.nx = w >= patch ? static_cast<int>(std::floor((w - patch) / stride)) + 1 : 0;
  g.ny = h >= patch ? static_cast<int>(std::floor((h - patch) / stride)) + 1 : 0;
  g.probability.assign(std::size_t(g.nx) * g.ny, ScanGrid::kNotScored);
  return g;
}

std::vector<float> tissue_fractions(const ScanGrid& grid, const TissueMask& tissue, double thumb_scale) {
  std::vector<float> out(std::size_t(grid.nx) * grid.ny, 0.f);
  cv::Mat sum;
  cv::integral(tissue.mask, sum, CV_64F);  // (rows+1) x (cols+1), values 255 per tissue pixel
  const int W = tissue.mask.cols, H = tissue.mask.rows;
  const double k = grid.input_to_level0 * thumb_scale;  // thumbnail pixels per input pixel
  auto at = [&](int x, int y) { return sum.at<double>(std::clamp(y, 0, H), std::clamp(x, 0, W)); };
  for (int j = 0; j < grid.ny; ++j)
    for (int i = 0; i < grid.nx; ++i) {
      // The tile's footprint on the thumbnail, at least one pixel.
      double fx0 = i * grid.stride * k, fy0 = j * grid.stride * k;
      int x0 = static_cast<int>(std::floor(fx0)), y0 = static_cast<int>(std::floor(fy0));
      int x1 = std::max(x0 + 1, static_cast<int>(std::ceil(fx0 + grid.patch * k)));
      int y1 = std::max(y0 + 1, static_cast<int>(std::ceil(fy0 + grid.patch * k)));
      double area = double(x1 - x0) * (y1 - y0);
      double s = at(x1, y1) - at(x0, y1) - at(x1, y0) + at(x0, y0);
      out[std::size_t(j) * grid.nx + i] = static_cast<float>(s / 255.0 / area);
    }
  return out;
}

std::vector<float> smooth_probabilities(const ScanGrid& grid, int radius) {
  if (radius <= 0 || grid.nx == 0 || grid.ny == 0) return grid.probability;
  // Window sums of the scored values and of how many cells are scored (box filters over
  // float grids: 16 bytes a tile position, sums of at most (2r+1)^2 values).
  cv::Mat value(grid.ny, grid.nx, CV_32F, cv::Scalar(0)), count(grid.ny, grid.nx, CV_32F, cv::Scalar(0));
  for (int j = 0; j < grid.ny; ++j)
    for (int i = 0; i < grid.nx; ++i)
      if (grid.scored(i, j)) {
        value.at<float>(j, i) = grid.at(i, j);
        count.at<float>(j, i) = 1.f;
      }
  const cv::Size window(2 * radius + 1, 2 * radius + 1);
  cv::boxFilter(value, value, CV_32F, window, cv::Point(-1, -1), false, cv::BORDER_CONSTANT);
  cv::boxFilter(count, count, CV_32F, window, cv::Point(-1, -1), false, cv::BORDER_CONSTANT);
  std::vector<float> out(grid.probability.size(), ScanGrid::kNotScored);
  for (int j = 0; j < grid.ny; ++j)
    for (int i = 0; i < grid.nx; ++i)
      if (grid.scored(i, j)) out[std::size_t(j) * grid.nx + i] = value.at<float>(j, i) / count.at<float>(j, i);
  return out;
}

void write_tiles_csv(const fs::path& path, const ScanGrid& grid, const std::vector<float>* smoothed) {
  write_file_atomic(path, [&](std::ostream& f) {
    f << (smoothed ? "x,y,level,probability,smoothed\n" : "x,y,level,probability\n");
    char buf[128];
    for (int j = 0; j < grid.ny; ++j)
      for (int i = 0; i < grid.nx; ++i)
        if (grid.scored(i, j)) {
          int n = std::snprintf(buf, sizeof buf, "%lld,%lld,%d,%.6f", static_cast<long long>(grid.x0(i)),
                                static_cast<long long>(grid.y0(j)), grid.level, double(grid.at(i, j)));
          if (smoothed) std::snprintf(buf + n, sizeof buf - n, ",%.6f", double((*smoothed)[std::size_t(j) * grid.nx + i]));
          f << buf << '\n';
        }
  });
}

namespace {

cv::Vec3b turbo_rgb(float p) {
  static cv::Mat lut = [] {
    cv::Mat ramp(1, 256, CV_8U), bgr;
    for (int i = 0; i < 256; ++i) ramp.at<std::uint8_t>(i) = static_cast<std::uint8_t>(i);
    cv::applyColorMap(ramp, bgr, cv::COLORMAP_TURBO);
    cv::Mat rgb;
    cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
    return rgb;
  }();
  int i = std::clamp(static_cast<int>(std::lround(p * 255.f)), 0, 255);
  return lut.at<cv::Vec3b>(0, i);
}

}  // namespace

cv::Mat render_heatmap(const cv::Mat& thumb_rgb, double thumb_scale, const ScanGrid& grid) {
  const int W = thumb_rgb.cols, H = thumb_rgb.rows;
  cv::Mat map = thumb_rgb.clone();
  const double k = grid.input_to_level0 * thumb_scale;  // thumbnail pixels per input pixel
  const double off = grid.cell_offset();
  if (grid.nx > 0 && grid.ny > 0 && k > 0) {
    for (int v = 0; v < H; ++v) {
      int j = static_cast<int>(std::floor(((v + 0.5) / k - off) / grid.stride));
      if (j < 0 || j >= grid.ny) continue;
      auto* row = map.ptr<cv::Vec3b>(v);
      for (int u = 0; u < W; ++u) {
        int i = static_cast<int>(std::floor(((u + 0.5) / k - off) / grid.stride));
        if (i < 0 || i >= grid.nx || !grid.scored(i, j)) continue;
        cv::Vec3b c = turbo_rgb(grid.at(i, j));
        for (int ch = 0; ch < 3; ++ch) row[u][ch] = static_cast<std::uint8_t>((row[u][ch] + 2 * c[ch]) / 3);
      }
    }
  }
  // Legend: a vertical colour bar from 1 (top) to 0 with ticks, in a white panel at the
  // right, sized with the image (u: pixels per unit of a 480-pixel-high image).
  const double u = std::max(1.0, H / 480.0);
  auto px = [&](double v) { return static_cast<int>(std::lround(v * u)); };
  const int panel = px(150), bar_w = px(24), bar_h = std::max(60, std::min(H - px(60), px(400)));
  cv::Mat out(std::max(H, bar_h + px(60)), W + panel, CV_8UC3, cv::Scalar(255, 255, 255));
  map.copyTo(out(cv::Rect(0, 0, W, H)));
  const int bx = W + px(16), by = px(40);
  for (int y = 0; y < bar_h; ++y) {
    cv::Vec3b c = turbo_rgb(1.f - float(y) / float(bar_h - 1));
    cv::line(out, cv::Point(bx, by + y), cv::Point(bx + bar_w - 1, by + y), cv::Scalar(c[0], c[1], c[2]));
  }
  cv::rectangle(out, cv::Rect(bx, by, bar_w, bar_h), cv::Scalar(0, 0, 0), std::max(1, px(1)));
  const auto font = cv::FONT_HERSHEY_SIMPLEX;
  const double fs = 0.45 * u;
  const int thick = std::max(1, px(1));
  cv::putText(out, "tumour", cv::Point(W + px(8), px(14)), font, fs, cv::Scalar(0, 0, 0), thick, cv::LINE_AA);
  cv::putText(out, "probability", cv::Point(W + px(8), px(30)), font, fs, cv::Scalar(0, 0, 0), thick, cv::LINE_AA);
  for (double t : {0.0, 0.25, 0.5, 0.75, 1.0}) {
    int y = by + static_cast<int>(std::lround((1.0 - t) * (bar_h - 1)));
    cv::line(out, cv::Point(bx + bar_w, y), cv::Point(bx + bar_w + px(5), y), cv::Scalar(0, 0, 0), thick);
    char label[16];
    std::snprintf(label, sizeof label, "%.2g", t);
    cv::putText(out, label, cv::Point(bx + bar_w + px(9), y + px(5)), font, fs, cv::Scalar(0, 0, 0), thick, cv::LINE_AA);
  }
  return out;
}

nlohmann::json tumour_geojson(const ScanGrid& grid, double threshold, double mm2_per_cell) {
  nlohmann::json features = nlohmann::json::array();
  if (grid.nx > 0 && grid.ny > 0) {
    cv::Mat mask(grid.ny, grid.nx, CV_8U, cv::Scalar(0));
    for (int j = 0; j < grid.ny; ++j)
      for (int i = 0; i < grid.nx; ++i)
        if (grid.scored(i, j) && grid.at(i, j) >= threshold) mask.at<std::uint8_t>(j, i) = 255;
    cv::Mat labels, stats, centroids;
    int n = cv::connectedComponentsWithStats(mask, labels, stats, centroids, 8, CV_32S);
    const int K = 4;  // cells are drawn K x K so a single cell still has an area
    const double off = grid.cell_offset();
    for (int c = 1; c < n; ++c) {
      cv::Rect box(stats.at<int>(c, cv::CC_STAT_LEFT), stats.at<int>(c, cv::CC_STAT_TOP), stats.at<int>(c, cv::CC_STAT_WIDTH),
                   stats.at<int>(c, cv::CC_STAT_HEIGHT));
      cv::Mat mine = (labels(box) == c);
      double psum = 0, pmax = 0;
      int cells = 0;
      for (int y = 0; y < box.height; ++y)
        for (int x = 0; x < box.width; ++x)
          if (mine.at<std::uint8_t>(y, x)) {
            float p = grid.at(box.x + x, box.y + y);
            psum += p;
            pmax = std::max(pmax, double(p));
            ++cells;
          }
      cv::Mat big(box.height * K + 2, box.width * K + 2, CV_8U, cv::Scalar(0));  // one pixel of padding
      cv::resize(mine, big(cv::Rect(1, 1, box.width * K, box.height * K)), cv::Size(box.width * K, box.height * K), 0, 0,
                 cv::INTER_NEAREST);
      std::vector<std::vector<cv::Point>> contours;
      std::vector<cv::Vec4i> hierarchy;
      cv::findContours(big, contours, hierarchy, cv::RETR_CCOMP, cv::CHAIN_APPROX_SIMPLE);
      // Level-0 coordinates of a contour point (a boundary pixel's centre).
      auto ring = [&](const std::vector<cv::Point>& pts, bool exterior) {
        nlohmann::json r = nlohmann::json::array();
        std::vector<std::array<double, 2>> xy;
        for (const auto& p : pts) {
          double cx = box.x + (p.x - 1 + 0.5) / K, cy = box.y + (p.y - 1 + 0.5) / K;  // in cells
          xy.push_back({(off + cx * grid.stride) * grid.input_to_level0, (off + cy * grid.stride) * grid.input_to_level0});
        }
        double area2 = 0;
        for (std::size_t i = 0; i < xy.size(); ++i) {
          const auto& a = xy[i];
          const auto& b = xy[(i + 1) % xy.size()];
          area2 += a[0] * b[1] - b[0] * a[1];
        }
        if ((area2 > 0) != exterior) std::reverse(xy.begin(), xy.end());  // exterior counter-clockwise, holes clockwise
        for (const auto& p : xy) r.push_back({std::round(p[0] * 10) / 10, std::round(p[1] * 10) / 10});
        if (!xy.empty()) {
          nlohmann::json first = r.front();  // a copy: push_back may move the array
          r.push_back(std::move(first));
        }
        return r;
      };
      // One component is one polygon: its outer contour (the first without a parent) and holes.
      for (std::size_t k = 0; k < contours.size(); ++k) {
        if (hierarchy[k][3] >= 0 || contours[k].size() < 3) continue;
        nlohmann::json rings = nlohmann::json::array({ring(contours[k], true)});
        for (int h = hierarchy[k][2]; h >= 0; h = hierarchy[h][0])
          if (contours[h].size() >= 3) rings.push_back(ring(contours[h], false));
        features.push_back({{"type", "Feature"},
                            {"geometry", {{"type", "Polygon"}, {"coordinates", rings}}},
                            {"properties",
                             {{"objectType", "annotation"},
                              {"name", "tumour " + std::to_string(features.size() + 1)},
                              {"classification", {{"name", "Tumor"}, {"color", {200, 0, 0}}}},
                              {"cells", cells},
                              {"area_mm2", cells * mm2_per_cell},
                              {"max_probability", pmax},
                              {"mean_probability", cells ? psum / cells : 0.0}}}});
        break;
      }
    }
  }
  return {{"type", "FeatureCollection"}, {"features", features}};
}

void write_png(const fs::path& path, const cv::Mat& rgb) {
  cv::Mat bgr;
  cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
  std::vector<std::uint8_t> bytes;
  if (!cv::imencode(".png", bgr, bytes)) throw InputError("cannot encode " + path.string());
  write_file_atomic(
      path, [&](std::ostream& f) { f.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size())); });
}

}  // namespace histoscan::slide
