#pragma once
// Lesion-level evaluation of slide scans against tumour outlines drawn by pathologists:
// QuPath GeoJSON or ASAP XML (the format CAMELYON16/17 ship their outlines in), per-slide
// Dice of the tumour region, and the cohort's FROC as the CAMELYON16 challenge computes it
// (Bejnordi et al., JAMA 2017; the challenge's Evaluation_FROC.py): see docs/cohorts.md.
#include <array>
#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>
#include <opencv2/core/mat.hpp>
#include <opencv2/core/types.hpp>

#include "histoscan/slide/scan_map.h"

namespace histoscan::cohort {

namespace fs = std::filesystem;

// One outlined region in level-0 pixels: its outer ring, then its holes.
struct Region {
  std::vector<std::vector<cv::Point2d>> rings;
};

// What an annotation file outlines. Regions are tumour, or exclusion (tissue inside a tumour
// outline that is not tumour: CAMELYON16's group _2), by their group or class name; others
// (points, other classes) are counted and left out.
struct Annotations {
  std::vector<Region> tumour, exclusion;
  std::size_t ignored = 0;
};

enum class AnnotationClass { tumour, exclusion, other };
// "", "_0", "_1", tumor/tumour, metastasis/metastases, carcinoma, cancer, positive -> tumour;
// "_2", exclusion, exclude, ignore, normal, non-tumor/non-tumour -> exclusion (any case);
// anything else -> other.
AnnotationClass classify_annotation(const std::string& name);

// Parses ASAP XML (text starting with '<') or GeoJSON (a FeatureCollection, a Feature, an
// array of Features or a bare geometry; Polygon and MultiPolygon). Throws InputError naming
// `name` for text that is neither, a coordinate that is not a finite number, or a polygon of
// fewer than 3 points.
Annotations parse_annotations(const std::string& text, const std::string& name);
Annotations read_annotations(const fs::path& path);  // InputError naming the file

// A detection: a local maximum of the smoothed heatmap (level-0 pixels).
struct Detection {
  double probability = 0, x = 0, y = 0;
};
// Greedy non-maximum suppression on the grid's (smoothed) probabilities: the most likely
// scored cell, then the next that lies more than `radius` cells from every one taken, down to
// `min_probability`.
std::vector<Detection> detect_lesions(const slide::ScanGrid& grid, int radius = 3, double min_probability = 0.01);

// One slide against its truth, as CAMELYON16's compute_FP_TP_Probs: `fp` holds the
// probabilities of detections outside every lesion (on a normal slide, all of them), `tp` the
// best probability that hit each lesion that is not isolated tumour cells (0: missed).
struct LesionResult {
  std::vector<double> fp, tp;
  std::size_t lesions = 0;  // lesions to find (not ITC)
  std::size_t itc = 0;      // lesions left out as isolated tumour cells
  double dice = -1;         // Dice of the cells called tumour against the cells inside tumour outlines; -1: none either way
};

// `truth` null: a normal slide (no lesions). `slide_mpp`: microns per level-0 pixel;
// `threshold`: cells with (smoothed) probability at or above it are called tumour.
LesionResult evaluate_lesions(const slide::ScanGrid& grid, double slide_mpp, const Annotations* truth, double threshold);
// The same with the grid's detections (detect_lesions) already made.
LesionResult evaluate_lesions(const slide::ScanGrid& grid, const std::vector<Detection>& detections, double slide_mpp,
                              const Annotations* truth, double threshold);

// The FROC curve over slides and its score, the mean sensitivity at 1/4, 1/2, 1, 2, 4 and 8
// false positives per slide (linear interpolation, as numpy.interp in the challenge's code).
struct Froc {
  std::vector<double> fp_per_slide, sensitivity;  // the curve, by falling threshold
  std::array<double, 6> at{};                     // sensitivity at kFrocRates
  double score = 0;
  std::size_t slides = 0, lesions = 0;
};
constexpr std::array<double, 6> kFrocRates = {0.25, 0.5, 1, 2, 4, 8};
// InputError when no slide has a lesion to find.
Froc compute_froc(const std::vector<LesionResult>& slides);

nlohmann::json to_json(const LesionResult& r);
LesionResult lesion_result_from_json(const nlohmann::json& j);

// A scan's grid rebuilt from its summary (summary.json) and tiles.csv (the smoothed column
// where there is one): what the heatmap, regions and call used.
slide::ScanGrid read_scan_grid(const fs::path& tiles_csv, const nlohmann::json& summary);

}  // namespace histoscan::cohort
