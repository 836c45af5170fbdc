#pragma once
// `histoscan evaluate`: a checkpoint's predictions on labelled data, the notebook's
// classification report, confusion matrix and ROC AUC, written as JSON and CSV.
#include <filesystem>
#include <string>
#include <vector>

#include "histoscan/data/store.h"
#include "histoscan/eval/metrics.h"
#include "histoscan/model/checkpoint.h"

namespace histoscan::eval {

namespace fs = std::filesystem;

struct Evaluation {
  std::vector<std::string> ids;
  std::vector<int> labels;
  std::vector<double> probabilities;
  Report report;
  double auc = 0;  // NaN when the labels hold one class only
};

// Scores every patch of `store` (which must be labelled) with the checkpoint's network on
// `device` and computes the report at the checkpoint's threshold.
Evaluation evaluate_store(model::Checkpoint& checkpoint, const data::PatchStore& store, const std::string& device,
                          int batch = 256);

// The text a user reads: classification report, confusion matrix, accuracy, ROC AUC.
std::string format_evaluation(const Evaluation& e);

// Writes out_dir/metrics.json and out_dir/predictions.csv (id,label,probability), each atomically.
void write_evaluation(const Evaluation& e, const fs::path& out_dir, const nlohmann::json& extra);

}  // namespace histoscan::eval
