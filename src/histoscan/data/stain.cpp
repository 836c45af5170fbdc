#include "histoscan/data/stain.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "histoscan/data/image_io.h"
#include "histoscan/util/error.h"
#include "histoscan/util/parallel.h"

namespace histoscan::data {

namespace {

using Vec3 = std::array<double, 3>;

// numpy.percentile's default (linear interpolation between the two nearest ranks); reorders v.
double percentile(std::vector<double>& v, double q) {
  const double pos = q / 100.0 * static_cast<double>(v.size() - 1);
  const auto lo = static_cast<std::size_t>(std::floor(pos));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(lo), v.end());
  const double a = v[lo];
  if (lo + 1 >= v.size()) return a;
  const double b = *std::min_element(v.begin() + static_cast<std::ptrdiff_t>(lo) + 1, v.end());
  return a + (pos - static_cast<double>(lo)) * (b - a);
}

double dot(const Vec3& x, const Vec3& y) { return x[0] * y[0] + x[1] * y[1] + x[2] * y[2]; }

// Optical density -ln((v + 1) / Io) of a byte: 256 values, computed once (a tile's 27,648
// channel values would otherwise each cost a logarithm).
double od(std::uint8_t v) {
  static const auto table = [] {
    std::array<double, 256> t{};
    for (int i = 0; i < 256; ++i) t[i] = -std::log((i + 1.0) / kMacenkoIo);
    return t;
  }();
  return table[v];
}

// Optical density of every pixel, and of the tissue pixels (OD >= beta in all three channels).
void optical_density(const std::uint8_t* rgb, std::size_t pixels, std::vector<Vec3>& all, std::vector<Vec3>& tissue) {
  all.resize(pixels);
  tissue.clear();
  for (std::size_t i = 0; i < pixels; ++i) {
    Vec3 d{od(rgb[3 * i]), od(rgb[3 * i + 1]), od(rgb[3 * i + 2])};
    all[i] = d;
    if (d[0] >= kMacenkoBeta && d[1] >= kMacenkoBeta && d[2] >= kMacenkoBeta) tissue.push_back(d);
  }
}

// Macenko's stain vectors (haematoxylin first) from tissue optical densities.
std::array<Vec3, 2> stain_vectors(const std::vector<Vec3>& tissue) {
  // The two main directions: eigenvectors of the covariance with the two largest eigenvalues.
  Vec3 mean{};
  for (const auto& d : tissue)
    for (int c = 0; c < 3; ++c) mean[c] += d[c];
  for (int c = 0; c < 3; ++c) mean[c] /= static_cast<double>(tissue.size());
  cv::Matx33d cov = cv::Matx33d::zeros();
  for (const auto& d : tissue)
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 3; ++c) cov(r, c) += (d[r] - mean[r]) * (d[c] - mean[c]);
  cov *= 1.0 / static_cast<double>(tissue.size() - 1);
  cv::Matx31d values;
  cv::Matx33d vectors;  // rows, largest eigenvalue first
  cv::eigen(cov, values, vectors);
  Vec3 v1{vectors(0, 0), vectors(0, 1), vectors(0, 2)};  // the main direction
  Vec3 v2{vectors(1, 0), vectors(1, 1), vectors(1, 2)};
  // The main direction points into positive density, so every angle below lies in (0, pi) and
  // none wraps round; the second's sign does not change the pair of vectors found.
  if (v1[0] + v1[1] + v1[2] < 0)
    for (auto& x : v1) x = -x;
  std::vector<double> phi(tissue.size());
  for (std::size_t i = 0; i < tissue.size(); ++i) {
    const auto& d = tissue[i];
    phi[i] = std::atan2(dot(d, v1), dot(d, v2));
  }
  const double lo = percentile(phi, kMacenkoAlpha), hi = percentile(phi, 100.0 - kMacenkoAlpha);
  auto direction = [&](double a) {
    return Vec3{v2[0] * std::cos(a) + v1[0] * std::sin(a), v2[1] * std::cos(a) + v1[1] * std::sin(a),
                v2[2] * std::cos(a) + v1[2] * std::sin(a)};
  };
  Vec3 a = direction(lo), b = direction(hi);
  // Haematoxylin absorbs more red than eosin does.
  return a[0] > b[0] ? std::array<Vec3, 2>{a, b} : std::array<Vec3, 2>{b, a};
}

// Least-squares amounts (h, e) of every pixel's density d = h H + e E: the 2 x 2 normal equations.
void stain_amounts(const std::array<Vec3, 2>& s, const std::vector<Vec3>& all, std::vector<double>& h, std::vector<double>& e) {
  const double a = dot(s[0], s[0]), b = dot(s[0], s[1]), c = dot(s[1], s[1]);
  const double det = a * c - b * b;
  h.resize(all.size());
  e.resize(all.size());
  for (std::size_t i = 0; i < all.size(); ++i) {
    const double p = dot(s[0], all[i]), q = dot(s[1], all[i]);
    h[i] = (c * p - b * q) / det;
    e[i] = (a * q - b * p) / det;
  }
}

std::uint8_t to_byte(double v) { return static_cast<std::uint8_t>(std::clamp(std::lround(v), 0L, 255L)); }

void macenko_image(const StainReference& ref, std::uint8_t* rgb, std::size_t pixels) {
  std::vector<Vec3> all, tissue;
  optical_density(rgb, pixels, all, tissue);
  if (tissue.size() < kMacenkoMinTissue) return;
  auto s = stain_vectors(tissue);
  std::vector<double> h, e;
  stain_amounts(s, all, h, e);
  std::vector<double> hh = h, ee = e;
  const double max_h = percentile(hh, 99.0), max_e = percentile(ee, 99.0);
  if (!(max_h > 0) || !(max_e > 0)) return;
  const double kh = ref.max_amount[0] / max_h, ke = ref.max_amount[1] / max_e;
  for (std::size_t i = 0; i < pixels; ++i)
    for (int c = 0; c < 3; ++c)
      rgb[3 * i + c] = to_byte(kMacenkoIo * std::exp(-(ref.stains[0][c] * h[i] * kh + ref.stains[1][c] * e[i] * ke)));
}

// Reinhard's colour space: RGB -> LMS (cone responses), log10, then l-alpha-beta.
Vec3 to_lab(const std::uint8_t* p) {
  const double r = p[0], g = p[1], b = p[2];
  const double l = std::log10(std::max(1.0, 0.3811 * r + 0.5783 * g + 0.0402 * b));
  const double m = std::log10(std::max(1.0, 0.1967 * r + 0.7244 * g + 0.0782 * b));
  const double s = std::log10(std::max(1.0, 0.0241 * r + 0.1288 * g + 0.8444 * b));
  return {(l + m + s) / std::sqrt(3.0), (l + m - 2 * s) / std::sqrt(6.0), (l - m) / std::sqrt(2.0)};
}

void from_lab(const Vec3& v, std::uint8_t* p) {
  const double a = v[0] / std::sqrt(3.0), b = v[1] / std::sqrt(6.0), c = v[2] / std::sqrt(2.0);
  const double l = std::pow(10.0, a + b + c), m = std::pow(10.0, a + b - c), s = std::pow(10.0, a - 2 * b);
  p[0] = to_byte(4.4679 * l - 3.5873 * m + 0.1193 * s);
  p[1] = to_byte(-1.2186 * l + 2.3809 * m - 0.1624 * s);
  p[2] = to_byte(0.0497 * l - 0.2439 * m + 1.2045 * s);
}

// Mean and (population) standard deviation of l, alpha and beta over one image.
std::pair<Vec3, Vec3> lab_stats(const std::uint8_t* rgb, std::size_t pixels) {
  Vec3 sum{}, sq{};
  for (std::size_t i = 0; i < pixels; ++i) {
    auto v = to_lab(rgb + 3 * i);
    for (int c = 0; c < 3; ++c) {
      sum[c] += v[c];
      sq[c] += v[c] * v[c];
    }
  }
  Vec3 mean{}, sd{};
  for (int c = 0; c < 3; ++c) {
    mean[c] = sum[c] / static_cast<double>(pixels);
    sd[c] = std::sqrt(std::max(0.0, sq[c] / static_cast<double>(pixels) - mean[c] * mean[c]));
  }
  return {mean, sd};
}

void reinhard_image(const StainReference& ref, std::uint8_t* rgb, std::size_t pixels) {
  auto [mean, sd] = lab_stats(rgb, pixels);
  for (std::size_t i = 0; i < pixels; ++i) {
    auto v = to_lab(rgb + 3 * i);
    for (int c = 0; c < 3; ++c) v[c] = (v[c] - mean[c]) * (sd[c] > 0 ? ref.stdev[c] / sd[c] : 1.0) + ref.mean[c];
    from_lab(v, rgb + 3 * i);
  }
}

nlohmann::json array_json(const double* v, std::size_t n) { return std::vector<double>(v, v + n); }

}  // namespace

StainMethod stain_method_of(const std::string& name, const std::string& flag) {
  if (name == "none" || name.empty()) return StainMethod::none;
  if (name == "macenko") return StainMethod::macenko;
  if (name == "reinhard") return StainMethod::reinhard;
  throw InputError(flag + " " + name + ": expected none, macenko or reinhard");
}

std::string stain_method_name(StainMethod method) {
  switch (method) {
    case StainMethod::macenko:
      return "macenko";
    case StainMethod::reinhard:
      return "reinhard";
    default:
      return "none";
  }
}

StainReference fit_macenko(const std::uint8_t* rgb, std::size_t pixels, const std::string& what) {
  std::vector<Vec3> all, tissue;
  optical_density(rgb, pixels, all, tissue);
  if (tissue.size() < kMacenkoMinTissue)
    throw InputError(what + ": " + std::to_string(tissue.size()) +
                     " tissue pixels, too few to fit Macenko's stain vectors to; give an image with stained tissue");
  StainReference ref;
  ref.method = StainMethod::macenko;
  ref.stains = stain_vectors(tissue);
  std::vector<double> h, e;
  stain_amounts(ref.stains, all, h, e);
  ref.max_amount = {percentile(h, 99.0), percentile(e, 99.0)};
  return ref;
}

StainReference fit_stain_reference(StainMethod method, const std::uint8_t* rgb, std::size_t pixels_per_image, std::size_t images,
                                   const std::string& fitted_on) {
  if (images == 0) throw InputError(fitted_on + ": no images to fit a stain reference to");
  StainReference ref;
  if (method == StainMethod::macenko) {
    // Up to 1,000 images, evenly spread, pooled as one (about 9 million pixels for patches).
    const std::size_t take = std::min<std::size_t>(images, 1000);
    std::vector<std::uint8_t> pool(take * pixels_per_image * 3);
    for (std::size_t k = 0; k < take; ++k) {
      const std::size_t i = k * images / take;
      std::copy_n(rgb + i * pixels_per_image * 3, pixels_per_image * 3, pool.data() + k * pixels_per_image * 3);
    }
    ref = fit_macenko(pool.data(), take * pixels_per_image, fitted_on);
  } else if (method == StainMethod::reinhard) {
    ref.method = method;
    for (std::size_t i = 0; i < images; ++i) {
      auto [mean, sd] = lab_stats(rgb + i * pixels_per_image * 3, pixels_per_image);
      for (int c = 0; c < 3; ++c) {
        ref.mean[c] += mean[c] / static_cast<double>(images);
        ref.stdev[c] += sd[c] / static_cast<double>(images);
      }
    }
  }
  ref.fitted_on = fitted_on;
  return ref;
}

StainReference fit_stain_to_image(StainMethod method, const std::string& path) {
  cv::Mat bgr = cv::imread(path, cv::IMREAD_COLOR);
  if (bgr.empty())
    throw InputError("--stain-ref " + path + ": cannot be read as an image; give a PNG, JPEG or TIFF of stained tissue");
  cv::Mat rgb;
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  if (!rgb.isContinuous()) rgb = rgb.clone();
  return fit_stain_reference(method, rgb.ptr<std::uint8_t>(), rgb.total(), 1, path);
}

void normalize_stain(const StainReference& ref, std::uint8_t* rgb, std::size_t pixels_per_image, std::size_t images,
                     int threads) {
  if (ref.method == StainMethod::none) return;
  parallel_for(images, threads, [&](std::size_t i) {
    std::uint8_t* image = rgb + i * pixels_per_image * 3;
    if (ref.method == StainMethod::macenko) macenko_image(ref, image, pixels_per_image);
    else reinhard_image(ref, image, pixels_per_image);
  });
}

nlohmann::json to_json(const StainReference& ref) {
  if (ref.method == StainMethod::none) return nullptr;
  nlohmann::json j{{"method", stain_method_name(ref.method)}, {"fitted_on", ref.fitted_on}};
  if (ref.method == StainMethod::macenko) {
    j["haematoxylin"] = array_json(ref.stains[0].data(), 3);
    j["eosin"] = array_json(ref.stains[1].data(), 3);
    j["max_amount"] = array_json(ref.max_amount.data(), 2);
    j["constants"] = {{"Io", kMacenkoIo}, {"beta", kMacenkoBeta}, {"alpha", kMacenkoAlpha}};
  } else {
    j["mean"] = array_json(ref.mean.data(), 3);
    j["std"] = array_json(ref.stdev.data(), 3);
  }
  return j;
}

StainReference stain_from_json(const nlohmann::json& j, const std::string& where) {
  StainReference ref;
  if (j.is_null()) return ref;
  try {
    ref.method = stain_method_of(j.at("method").get<std::string>(), where + " stain_norm.method");
    ref.fitted_on = j.value("fitted_on", "");
    auto read = [&](const char* key, double* out, std::size_t n) {
      auto v = j.at(key).get<std::vector<double>>();
      if (v.size() != n) throw InputError(where + ": stain_norm." + key + " needs " + std::to_string(n) + " numbers");
      std::copy(v.begin(), v.end(), out);
    };
    if (ref.method == StainMethod::macenko) {
      read("haematoxylin", ref.stains[0].data(), 3);
      read("eosin", ref.stains[1].data(), 3);
      read("max_amount", ref.max_amount.data(), 2);
    } else if (ref.method == StainMethod::reinhard) {
      read("mean", ref.mean.data(), 3);
      read("std", ref.stdev.data(), 3);
    }
  } catch (const nlohmann::json::exception& e) {
    throw InputError(where + ": stain_norm is malformed (" + e.what() + "); retrain or re-save the checkpoint");
  }
  return ref;
}

StainReference stain_of_model(const nlohmann::json& meta, const std::string& where) {
  return stain_from_json(meta.is_object() && meta.contains("stain_norm") ? meta.at("stain_norm") : nlohmann::json(nullptr),
                         where);
}

const std::uint8_t* normalized_patches(const StainReference& ref, const std::uint8_t* pixels, std::size_t n,
                                       std::vector<std::uint8_t>& storage, int threads) {
  if (ref.method == StainMethod::none) return pixels;
  storage.assign(pixels, pixels + n * kPatchBytes);
  normalize_stain(ref, storage.data(), kPatchBytes / 3, n, threads);
  return storage.data();
}

}  // namespace histoscan::data
