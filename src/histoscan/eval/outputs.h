#pragma once
// What `evaluate` and `metrics` leave in EVAL_DIR: metrics.json, predictions.csv, the plots
// and report.html for one model, or one folder per model plus a comparison for several.
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "histoscan/data/store.h"
#include "histoscan/eval/analysis.h"

namespace histoscan::eval {

namespace fs = std::filesystem;

// One model's predictions on labelled data and their summary.
struct ModelResult {
  std::string name;                                // what the user gave, e.g. "runs/a/best.pt"
  nlohmann::json meta = nlohmann::json::object();  // checkpoint metadata; {} for `metrics`
  fs::path history_csv;                            // the run's history.csv when it exists, else empty
  std::vector<std::string> ids;
  std::vector<int> labels;
  std::vector<double> probs;
  Summary summary;
  int views = 0;  // dihedral views averaged per patch (1: as it is; 2, 4, 8: --tta); 0: not scored here (`metrics`)
};

// Writes dir/{metrics.json, predictions.csv, roc.png, pr.png, confusion.png,
// reliability.png, history.png (when the run's history is known), report.html}, each
// atomically. `patches` (ids and pixels of the same rows, may be null) feeds the grid of
// most confidently wrong patches; `data` describes the data for the report.
void write_model_outputs(const fs::path& dir, const ModelResult& result, const data::PatchStore* patches,
                         const std::string& data);

// Several models on the same data: dir/comparison.json and dir/roc.png with every curve.
void write_comparison(const fs::path& dir, const std::vector<ModelResult>& results);

// A table of the models side by side (AUC with interval, accuracy, sensitivity, specificity...),
// each named by its folder (result_folder_names).
std::string format_comparison(const std::vector<ModelResult>& results);

// A folder name for each model, unique among them: "a-best" for runs/a/best.pt.
std::vector<std::string> result_folder_names(const std::vector<ModelResult>& results);

}  // namespace histoscan::eval
