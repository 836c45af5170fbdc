#include "histoscan/eval/metrics_json.h"

#include <cmath>

namespace histoscan::eval {

namespace {

nlohmann::json stats_to_json(const ClassStats& s) {
  return {{"precision", s.precision}, {"recall", s.recall}, {"f1", s.f1}, {"support", s.support}};
}

}  // namespace

nlohmann::json report_to_json(const Report& report, double auc) {
  const Confusion& c = report.confusion;
  nlohmann::json j;
  // nlohmann would write NaN as null anyway; being explicit keeps the contract visible
  // for callers that pass NaN when one class is missing and AUC is undefined.
  j["auc"] = std::isfinite(auc) ? nlohmann::json(auc) : nlohmann::json(nullptr);
  j["accuracy"] = report.accuracy;
  j["threshold"] = report.threshold;
  j["confusion_matrix"] = nlohmann::json::array({{c.tn, c.fp}, {c.fn, c.tp}});
  j["classes"] = {{"0", stats_to_json(report.negative)}, {"1", stats_to_json(report.positive)}};
  j["macro_avg"] = stats_to_json(report.macro_avg);
  j["weighted_avg"] = stats_to_json(report.weighted_avg);
  return j;
}

}  // namespace histoscan::eval
