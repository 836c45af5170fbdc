#include "histoscan/cohort/lesions.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <iterator>
#include <set>

#include <nlohmann/json.hpp>
#include <opencv2/imgproc.hpp>
#include <pugixml.hpp>

#include "histoscan/util/csv.h"
#include "histoscan/util/error.h"

namespace histoscan::cohort {

namespace {

// The evaluation raster: CAMELYON16 evaluates at level 5 of 0.243 µm/px scans (7.776 µm a
// pixel); histoscan rasterizes every slide at that size, whatever its own resolution.
constexpr double kEvalUm = 0.243 * 32;
// Tumour outlines are grown by this much before lesions are told apart: the challenge's
// evaluation code (Threshold = 75 / (resolution * 2^level * 2): half of the 75 µm its text names).
constexpr double kGrowUm = 75.0 / 2;
// A lesion whose major axis (of the grown region) is below this is isolated tumour cells.
constexpr double kItcUm = 275;

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

double coordinate(const char* text, const std::string& where) {
  char* end = nullptr;
  double v = std::strtod(text, &end);
  if (end == text || *end != '\0' || !std::isfinite(v))
    throw InputError(where + ": coordinate '" + std::string(text) + "' is not a number");
  return v;
}

void add_region(Annotations& a, const std::string& cls, Region&& r) {
  if (r.rings.empty() || r.rings[0].size() < 3) {
    ++a.ignored;
    return;
  }
  switch (classify_annotation(cls)) {
    case AnnotationClass::tumour:
      a.tumour.push_back(std::move(r));
      break;
    case AnnotationClass::exclusion:
      a.exclusion.push_back(std::move(r));
      break;
    case AnnotationClass::other:
      ++a.ignored;
      break;
  }
}

Annotations parse_asap(const std::string& text, const std::string& name) {
  pugi::xml_document doc;
  auto ok = doc.load_buffer(text.data(), text.size());
  if (!ok) throw InputError(name + ": not ASAP XML (" + ok.description() + " at byte " + std::to_string(ok.offset) + ")");
  Annotations a;
  std::size_t index = 0;
  for (auto node : doc.select_nodes("//Annotation")) {
    auto ann = node.node();
    const std::string where = name + " annotation " + std::to_string(index++);
    std::string type = lower(ann.attribute("Type").as_string());
    if (type == "dot" || type == "pointset" || type == "measurement") {
      ++a.ignored;
      continue;
    }
    std::vector<std::pair<long long, cv::Point2d>> points;
    for (auto c : ann.child("Coordinates").children("Coordinate")) {
      const char* x = c.attribute("X").value();
      const char* y = c.attribute("Y").value();
      points.push_back({c.attribute("Order").as_llong(static_cast<long long>(points.size())),
                        cv::Point2d(coordinate(x, where), coordinate(y, where))});
    }
    std::stable_sort(points.begin(), points.end(), [](const auto& p, const auto& q) { return p.first < q.first; });
    Region r;
    r.rings.emplace_back();
    for (const auto& p : points) r.rings[0].push_back(p.second);
    add_region(a, ann.attribute("PartOfGroup").as_string(), std::move(r));
  }
  return a;
}

std::vector<cv::Point2d> geojson_ring(const nlohmann::json& ring, const std::string& where) {
  if (!ring.is_array()) throw InputError(where + ": a ring is not an array of positions");
  std::vector<cv::Point2d> out;
  for (const auto& p : ring) {
    if (!p.is_array() || p.size() < 2 || !p[0].is_number() || !p[1].is_number())
      throw InputError(where + ": a position is not [x, y]");
    double x = p[0].get<double>(), y = p[1].get<double>();
    if (!std::isfinite(x) || !std::isfinite(y)) throw InputError(where + ": a position is not finite");
    out.emplace_back(x, y);
  }
  return out;
}

Region geojson_polygon(const nlohmann::json& rings, const std::string& where) {
  if (!rings.is_array()) throw InputError(where + ": Polygon coordinates are not an array of rings");
  Region r;
  for (const auto& ring : rings) r.rings.push_back(geojson_ring(ring, where));
  return r;
}

void parse_geojson_value(const nlohmann::json& v, const std::string& cls, Annotations& a, const std::string& where, int depth) {
  if (depth > 16) throw InputError(where + ": nested too deeply");
  if (v.is_array()) {
    for (const auto& item : v) parse_geojson_value(item, cls, a, where, depth + 1);
    return;
  }
  if (!v.is_object() || !v.contains("type") || !v["type"].is_string())
    throw InputError(where + ": a GeoJSON object without a type");
  const std::string type = v["type"].get<std::string>();
  auto member = [&](const char* key) -> const nlohmann::json& {
    if (!v.contains(key)) throw InputError(where + ": a " + type + " without '" + key + "'");
    return v[key];
  };
  if (type == "FeatureCollection") {
    parse_geojson_value(member("features"), cls, a, where, depth + 1);
  } else if (type == "Feature") {
    std::string c = cls;
    if (v.contains("properties") && v["properties"].is_object() && v["properties"].contains("classification")) {
      const auto& k = v["properties"]["classification"];
      if (k.is_string()) c = k.get<std::string>();
      else if (k.is_object() && k.contains("name") && k["name"].is_string()) c = k["name"].get<std::string>();
    }
    if (v.contains("geometry") && !v["geometry"].is_null()) parse_geojson_value(v["geometry"], c, a, where, depth + 1);
    else ++a.ignored;
  } else if (type == "GeometryCollection") {
    parse_geojson_value(member("geometries"), cls, a, where, depth + 1);
  } else if (type == "Polygon") {
    add_region(a, cls, geojson_polygon(member("coordinates"), where));
  } else if (type == "MultiPolygon") {
    const auto& polygons = member("coordinates");
    if (!polygons.is_array()) throw InputError(where + ": MultiPolygon coordinates are not an array of polygons");
    for (const auto& p : polygons) add_region(a, cls, geojson_polygon(p, where));
  } else {
    ++a.ignored;  // points, lines: no area
  }
}

// Level-0 points to the evaluation raster, in cv::fillPoly's fixed point (4 fractional bits).
std::vector<std::vector<cv::Point>> raster_rings(const Region& r, double scale) {
  std::vector<std::vector<cv::Point>> rings;
  for (const auto& ring : r.rings) {
    std::vector<cv::Point> pts;
    for (const auto& p : ring) {
      double x = std::clamp(p.x * scale * 16, -1e9, 1e9), y = std::clamp(p.y * scale * 16, -1e9, 1e9);
      pts.emplace_back(static_cast<int>(std::lround(x)), static_cast<int>(std::lround(y)));
    }
    if (pts.size() >= 3) rings.push_back(std::move(pts));
  }
  return rings;
}

// Background regions that do not reach the border become foreground (scipy's binary_fill_holes).
void fill_holes(cv::Mat& binary) {
  cv::Mat padded;
  cv::copyMakeBorder(binary, padded, 1, 1, 1, 1, cv::BORDER_CONSTANT, cv::Scalar(0));
  cv::floodFill(padded, cv::Point(0, 0), cv::Scalar(128));
  cv::Mat inner = padded(cv::Rect(1, 1, binary.cols, binary.rows));
  binary.setTo(255, inner == 0);
}

// numpy.interp(x, xp, fp) for non-decreasing xp.
double interp(double x, const std::vector<double>& xp, const std::vector<double>& fp) {
  const std::ptrdiff_t n = static_cast<std::ptrdiff_t>(xp.size());
  std::ptrdiff_t j = std::upper_bound(xp.begin(), xp.end(), x) - xp.begin() - 1;
  if (j < 0) return fp.front();
  if (j >= n - 1) return fp.back();
  if (xp[j] == x) return fp[j];
  return fp[j] + (fp[j + 1] - fp[j]) * (x - xp[j]) / (xp[j + 1] - xp[j]);
}

}  // namespace

AnnotationClass classify_annotation(const std::string& name) {
  static const std::set<std::string> tumour = {"",           "_0",         "_1",        "tumor",  "tumour",
                                               "metastasis", "metastases", "carcinoma", "cancer", "positive"};
  static const std::set<std::string> exclusion = {"_2", "exclusion", "exclude", "ignore", "normal", "non-tumor", "non-tumour"};
  std::string n = lower(name);
  if (tumour.count(n)) return AnnotationClass::tumour;
  if (exclusion.count(n)) return AnnotationClass::exclusion;
  return AnnotationClass::other;
}

Annotations parse_annotations(const std::string& text, const std::string& name) {
  std::size_t start = text.rfind("\xEF\xBB\xBF", 0) == 0 ? 3 : 0;
  while (start < text.size() && std::isspace(static_cast<unsigned char>(text[start]))) ++start;
  if (start < text.size() && text[start] == '<') return parse_asap(text, name);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text.begin() + static_cast<std::ptrdiff_t>(start), text.end());
  } catch (const nlohmann::json::exception& e) {
    throw InputError(name + ": neither ASAP XML nor GeoJSON (" + std::string(e.what()).substr(0, 160) + ")");
  }
  Annotations a;
  try {
    parse_geojson_value(j, "", a, name, 0);
  } catch (const nlohmann::json::exception& e) {
    throw InputError(name + ": not GeoJSON as QuPath writes it (" + std::string(e.what()).substr(0, 160) + ")");
  }
  return a;
}

Annotations read_annotations(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path.string() + ": cannot read the annotations; check the path");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return parse_annotations(text, path.string());
}

std::vector<Detection> detect_lesions(const slide::ScanGrid& grid, int radius, double min_probability) {
  std::vector<std::uint32_t> cells;
  for (int j = 0; j < grid.ny; ++j)
    for (int i = 0; i < grid.nx; ++i)
      if (grid.scored(i, j) && grid.at(i, j) >= min_probability)
        cells.push_back(static_cast<std::uint32_t>(std::size_t(j) * grid.nx + i));
  std::stable_sort(cells.begin(), cells.end(), [&](auto a, auto b) { return grid.probability[a] > grid.probability[b]; });
  cv::Mat taken(std::max(grid.ny, 1), std::max(grid.nx, 1), CV_8U, cv::Scalar(0));  // within `radius` of a detection
  std::vector<Detection> out;
  const double off = grid.cell_offset();
  for (auto c : cells) {
    int i = static_cast<int>(c % grid.nx), j = static_cast<int>(c / grid.nx);
    if (taken.at<std::uint8_t>(j, i)) continue;
    out.push_back({grid.probability[c], (off + (i + 0.5) * grid.stride) * grid.input_to_level0,
                   (off + (j + 0.5) * grid.stride) * grid.input_to_level0});
    cv::circle(taken, cv::Point(i, j), radius, cv::Scalar(255), cv::FILLED);
  }
  return out;
}

LesionResult evaluate_lesions(const slide::ScanGrid& grid, double slide_mpp, const Annotations* truth, double threshold) {
  return evaluate_lesions(grid, detect_lesions(grid), slide_mpp, truth, threshold);
}

LesionResult evaluate_lesions(const slide::ScanGrid& grid, const std::vector<Detection>& detections, double slide_mpp,
                              const Annotations* truth, double threshold) {
  LesionResult r;
  if (!truth) {
    for (const auto& d : detections) r.fp.push_back(d.probability);
    return r;
  }
  // The raster covers the tiled area of the slide.
  const double scale = slide_mpp / kEvalUm;  // raster pixels per level-0 pixel
  const double extent_x = ((grid.nx > 0 ? grid.nx - 1 : 0) * grid.stride + grid.patch) * grid.input_to_level0;
  const double extent_y = ((grid.ny > 0 ? grid.ny - 1 : 0) * grid.stride + grid.patch) * grid.input_to_level0;
  const int W = std::max(1, static_cast<int>(std::ceil(extent_x * scale))),
            H = std::max(1, static_cast<int>(std::ceil(extent_y * scale)));
  cv::Mat tumour(H, W, CV_8U, cv::Scalar(0));
  for (const auto& region : truth->tumour) {
    auto rings = raster_rings(region, scale);
    if (!rings.empty()) cv::fillPoly(tumour, rings, cv::Scalar(255), cv::LINE_8, 4);
  }
  for (const auto& region : truth->exclusion) {
    auto rings = raster_rings(region, scale);
    if (!rings.empty()) cv::fillPoly(tumour, rings, cv::Scalar(0), cv::LINE_8, 4);
  }
  // The evaluation mask: grown, holes filled, lesions told apart (8-connected).
  cv::Mat distance, grown;
  cv::distanceTransform(tumour == 0, distance, cv::DIST_L2, cv::DIST_MASK_PRECISE);
  grown = distance < kGrowUm / kEvalUm;
  fill_holes(grown);
  cv::Mat labels;
  const int n = cv::connectedComponents(grown, labels, 8, CV_32S) - 1;
  // Isolated tumour cells: the major axis (4 sqrt of the larger eigenvalue of the pixel
  // coordinates' covariance, as scikit-image's regionprops) below kItcUm.
  std::vector<double> s0(n + 1), sx(n + 1), sy(n + 1), sxx(n + 1), syy(n + 1), sxy(n + 1);
  for (int y = 0; y < H; ++y) {
    const int* row = labels.ptr<int>(y);
    for (int x = 0; x < W; ++x)
      if (int k = row[x])
        s0[k] += 1, sx[k] += x, sy[k] += y, sxx[k] += double(x) * x, syy[k] += double(y) * y, sxy[k] += double(x) * y;
  }
  std::vector<char> itc(n + 1, 0);
  for (int k = 1; k <= n; ++k) {
    double mx = sx[k] / s0[k], my = sy[k] / s0[k];
    double a = sxx[k] / s0[k] - mx * mx, c = syy[k] / s0[k] - my * my, b = sxy[k] / s0[k] - mx * my;
    double l1 = (a + c) / 2 + std::sqrt((a - c) * (a - c) / 4 + b * b);
    itc[k] = 4 * std::sqrt(std::max(l1, 0.0)) < kItcUm / kEvalUm;
    r.itc += itc[k];
  }
  r.lesions = static_cast<std::size_t>(n) - r.itc;
  // Each detection hits the lesion under it, or none (a false positive); hits on isolated
  // tumour cells count neither way; a lesion keeps its best hit.
  std::vector<double> best(n + 1, 0.0);
  for (const auto& d : detections) {
    int x = static_cast<int>(std::floor(d.x * scale)), y = static_cast<int>(std::floor(d.y * scale));
    int k = (x >= 0 && x < W && y >= 0 && y < H) ? labels.at<int>(y, x) : 0;
    if (k == 0) r.fp.push_back(d.probability);
    else if (!itc[k]) best[k] = std::max(best[k], d.probability);
  }
  for (int k = 1; k <= n; ++k)
    if (!itc[k]) r.tp.push_back(best[k]);
  // Dice on the grid's cells: called tumour against centre inside a tumour outline.
  std::size_t both = 0, called = 0, truth_cells = 0;
  const double off = grid.cell_offset();
  for (int j = 0; j < grid.ny; ++j)
    for (int i = 0; i < grid.nx; ++i) {
      int x = static_cast<int>(std::floor((off + (i + 0.5) * grid.stride) * grid.input_to_level0 * scale));
      int y = static_cast<int>(std::floor((off + (j + 0.5) * grid.stride) * grid.input_to_level0 * scale));
      bool t = x < W && y < H && tumour.at<std::uint8_t>(y, x);
      bool p = grid.scored(i, j) && grid.at(i, j) >= threshold;
      both += t && p, called += p, truth_cells += t;
    }
  if (called + truth_cells > 0) r.dice = 2.0 * double(both) / double(called + truth_cells);
  return r;
}

Froc compute_froc(const std::vector<LesionResult>& slides) {
  Froc f;
  f.slides = slides.size();
  std::vector<double> fp, tp;
  for (const auto& s : slides) {
    fp.insert(fp.end(), s.fp.begin(), s.fp.end());
    tp.insert(tp.end(), s.tp.begin(), s.tp.end());
    f.lesions += s.lesions;
  }
  if (f.lesions == 0)
    throw InputError(
        "no slide has a lesion to find (tumour outlines larger than isolated tumour cells); FROC needs at least one");
  std::vector<double> all(fp);
  all.insert(all.end(), tp.begin(), tp.end());
  // The challenge's TP list also holds a 0 for each isolated-tumour-cells lesion, which can
  // make 0 the smallest probability (the one skipped below) instead of a real one.
  for (const auto& s : slides)
    if (s.itc > 0) all.push_back(0.0);
  std::sort(all.begin(), all.end());
  all.erase(std::unique(all.begin(), all.end()), all.end());
  std::sort(fp.begin(), fp.end());
  std::sort(tp.begin(), tp.end());
  auto at_least = [](const std::vector<double>& v, double t) {
    return double(v.end() - std::lower_bound(v.begin(), v.end(), t));
  };
  // As the challenge's computeFROC: every threshold but the smallest, then (0, 0).
  for (std::size_t k = 1; k < all.size(); ++k) {
    f.fp_per_slide.push_back(at_least(fp, all[k]) / double(f.slides));
    f.sensitivity.push_back(at_least(tp, all[k]) / double(f.lesions));
  }
  f.fp_per_slide.push_back(0);
  f.sensitivity.push_back(0);
  std::vector<double> xp(f.fp_per_slide.rbegin(), f.fp_per_slide.rend()), yp(f.sensitivity.rbegin(), f.sensitivity.rend());
  for (std::size_t k = 0; k < kFrocRates.size(); ++k) {
    f.at[k] = interp(kFrocRates[k], xp, yp);
    f.score += f.at[k] / double(kFrocRates.size());
  }
  return f;
}

nlohmann::json to_json(const LesionResult& r) {
  auto rounded = [](const std::vector<double>& v) {
    nlohmann::json a = nlohmann::json::array();
    for (double x : v) a.push_back(std::round(x * 1e6) / 1e6);
    return a;
  };
  return {{"fp", rounded(r.fp)},
          {"tp", rounded(r.tp)},
          {"lesions", r.lesions},
          {"itc", r.itc},
          {"dice", r.dice < 0 ? nlohmann::json(nullptr) : nlohmann::json(r.dice)}};
}

LesionResult lesion_result_from_json(const nlohmann::json& j) {
  LesionResult r;
  r.fp = j.at("fp").get<std::vector<double>>();
  r.tp = j.at("tp").get<std::vector<double>>();
  r.lesions = j.at("lesions").get<std::size_t>();
  r.itc = j.at("itc").get<std::size_t>();
  r.dice = j.at("dice").is_null() ? -1 : j.at("dice").get<double>();
  return r;
}

slide::ScanGrid read_scan_grid(const fs::path& tiles_csv, const nlohmann::json& s) {
  const double input_to_level0 = s.at("tile_level0_px").get<double>() / 96.0;
  auto grid = slide::make_grid(s.at("width").get<std::int64_t>(), s.at("height").get<std::int64_t>(), input_to_level0,
                               s.at("stride").get<int>());
  grid.level = s.at("level").get<int>();
  grid.target_mpp = s.at("target_mpp").get<double>();
  CsvReader<4> reader(tiles_csv.string());
  reader.read_header(io::ignore_extra_column | io::ignore_missing_column, "x", "y", "probability", "smoothed");
  const bool smoothed = reader.has_column("smoothed");
  double x, y, p, sm = 0;
  while (reader.read_row(x, y, p, sm)) {
    long i = std::lround(x / (grid.stride * input_to_level0)), j = std::lround(y / (grid.stride * input_to_level0));
    if (i < 0 || j < 0 || i >= grid.nx || j >= grid.ny) continue;
    grid.probability[std::size_t(j) * grid.nx + std::size_t(i)] = static_cast<float>(smoothed ? sm : p);
  }
  return grid;
}

}  // namespace histoscan::cohort
