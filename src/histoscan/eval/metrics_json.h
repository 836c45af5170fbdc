#pragma once
// JSON form of an evaluation report, written next to a model's other outputs so that
// scripts and dashboards can read the numbers without parsing the text report.
#include <nlohmann/json.hpp>

#include "histoscan/eval/metrics.h"

namespace histoscan::eval {

// {"auc", "accuracy", "threshold", "confusion_matrix": [[tn, fp], [fn, tp]],
//  "classes": {"0": {...}, "1": {...}}, "macro_avg": {...}, "weighted_avg": {...}},
// each {...} being {"precision", "recall", "f1", "support"}. A NaN auc becomes null.
nlohmann::json report_to_json(const Report& report, double auc);

}  // namespace histoscan::eval
