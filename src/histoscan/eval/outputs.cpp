#include "histoscan/eval/outputs.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <numeric>
#include <ostream>
#include <set>
#include <sstream>

#include "histoscan/eval/html_report.h"
#include "histoscan/eval/plots.h"
#include "histoscan/util/atomic_file.h"

namespace histoscan::eval {

namespace {

std::string fixed(double v, int digits = 4) {
  if (!std::isfinite(v)) return "undefined";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::vector<std::string> interval_row(const std::string& name, const Interval& i) {
  return {name, fixed(i.estimate), fixed(i.low), fixed(i.high)};
}

ReportPatch report_patch(const data::PatchStore& store, std::size_t row, double prob) {
  ReportPatch p;
  p.id = store.ids[row];
  p.label = store.labels[row];
  p.probability = prob;
  p.rgb.assign(store.image(row), store.image(row) + data::kPatchBytes);
  return p;
}

// The `count` most confidently wrong patches of one kind: false positives by highest
// probability, false negatives by lowest.
std::vector<ReportPatch> most_wrong(const ModelResult& r, const data::PatchStore& store, int label, std::size_t count) {
  double t = r.summary.report.threshold;
  std::vector<std::size_t> rows;
  for (std::size_t i = 0; i < r.labels.size(); ++i) {
    bool predicted = r.probs[i] >= t;
    if (r.labels[i] == label && predicted != (label == 1)) rows.push_back(i);
  }
  auto more_wrong = [&](std::size_t a, std::size_t b) { return label == 0 ? r.probs[a] > r.probs[b] : r.probs[a] < r.probs[b]; };
  std::size_t k = std::min(count, rows.size());
  std::partial_sort(rows.begin(), rows.begin() + static_cast<std::ptrdiff_t>(k), rows.end(), more_wrong);
  std::vector<ReportPatch> out;
  for (std::size_t j = 0; j < k; ++j) out.push_back(report_patch(store, rows[j], r.probs[rows[j]]));
  return out;
}

std::string now_text() {
  std::time_t t = std::time(nullptr);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", std::gmtime(&t));
  return buf;
}

Series roc_series(const ModelResult& r) {
  return {r.name + " (AUC " + fixed(r.summary.auc, 3) + ")", r.summary.roc.fpr, r.summary.roc.tpr};
}

Marker roc_marker(const ModelResult& r) {
  const auto& p = r.summary.point;
  return {r.name + " at threshold " + fixed(p.threshold, 3), 1.0 - p.specificity, p.sensitivity};
}

ReportInput report_input(const ModelResult& r, const std::string& data) {
  const Summary& s = r.summary;
  ReportInput in;
  in.title = "histoscan evaluation: " + r.name;
  in.summary = {{"checkpoint", r.name}};
  if (r.meta.contains("model")) in.summary.push_back({"model", r.meta["model"].get<std::string>()});
  if (r.meta.contains("data_source")) in.summary.push_back({"trained on", r.meta["data_source"].get<std::string>()});
  if (r.meta.contains("training") && !r.meta["training"].value("command", "").empty())
    in.summary.push_back({"trained with", r.meta["training"]["command"].get<std::string>()});
  if (r.meta.contains("epoch")) in.summary.push_back({"epoch", r.meta["epoch"].dump()});
  in.summary.push_back({"evaluated on", data});
  if (r.views > 1)
    in.summary.push_back(
        {"scored", "mean probability of " + std::to_string(r.views) + " dihedral views (--tta=" + std::to_string(r.views) + ")"});
  in.summary.push_back({"patches", std::to_string(s.n) + " (" + std::to_string(s.negatives) + " normal, " +
                                       std::to_string(s.positives) + " tumour)"});
  in.summary.push_back({"created", now_text()});
  const auto& ci = s.intervals;
  in.metrics_table = {{"metric", "value", "95% CI low", "95% CI high"},
                      interval_row("ROC AUC", ci.auc),
                      interval_row("accuracy", ci.accuracy),
                      interval_row("sensitivity (recall of tumour)", ci.sensitivity),
                      interval_row("specificity", ci.specificity),
                      {"balanced accuracy", fixed(s.balanced_accuracy), "", ""},
                      {"Matthews correlation", fixed(s.mcc), "", ""},
                      {"average precision", fixed(s.average_precision), "", ""},
                      {"log loss", fixed(s.log_loss), "", ""},
                      {"Brier score", fixed(s.brier), "", ""},
                      {"expected calibration error", fixed(s.calibration.ece), "", ""}};
  const auto& p = s.point;
  in.operating_table = {
      {"rule", "threshold", "sensitivity", "specificity", "PPV", "NPV", "F1", "TN", "FP", "FN", "TP", "missed tumours / 1,000",
       "false alarms / 1,000"},
      {p.rule, fixed(p.threshold), fixed(p.sensitivity), fixed(p.specificity), fixed(p.ppv), fixed(p.npv), fixed(p.f1),
       std::to_string(p.confusion.tn), std::to_string(p.confusion.fp), std::to_string(p.confusion.fn),
       std::to_string(p.confusion.tp), fixed(p.missed_per_1000, 1), fixed(p.false_alarms_per_1000, 1)}};
  return in;
}

}  // namespace

void write_model_outputs(const fs::path& dir, const ModelResult& r, const data::PatchStore* patches, const std::string& data) {
  const Summary& s = r.summary;
  nlohmann::json metrics = to_json(s);
  metrics["checkpoint"] = r.name;
  metrics["data"] = data;
  if (!r.meta.empty()) metrics["model"] = r.meta.value("model", "");
  if (r.views > 0) metrics["tta_views"] = r.views;
  write_file_atomic(dir / "metrics.json", [&](std::ostream& f) { f << metrics.dump(2) << '\n'; });
  write_file_atomic(dir / "predictions.csv", [&](std::ostream& f) {
    f << "id,label,probability\n";
    char buf[40];
    for (std::size_t i = 0; i < r.ids.size(); ++i) {
      std::snprintf(buf, sizeof buf, "%.17g", r.probs[i]);  // round-trips exactly: metrics recomputed from the file match
      f << r.ids[i] << ',' << r.labels[i] << ',' << buf << '\n';
    }
  });

  ReportInput in = report_input(r, data);
  plot_roc(dir / "roc.png", {roc_series(r)}, {roc_marker(r)});
  double positive_rate = s.n ? double(s.positives) / double(s.n) : 0.0;
  plot_pr(dir / "pr.png", {{r.name + " (AP " + fixed(s.average_precision, 3) + ")", s.pr.recall, s.pr.precision}},
          {{"threshold " + fixed(s.point.threshold, 3), s.point.sensitivity, s.point.ppv}}, positive_rate);
  plot_confusion(dir / "confusion.png", s.point.confusion, s.point.threshold);
  plot_reliability(dir / "reliability.png", s.calibration.mean_predicted, s.calibration.fraction_positive, s.calibration.count,
                   s.calibration.ece, static_cast<int>(s.calibration.count.size()));
  in.plots = {{"ROC curve", dir / "roc.png"},
              {"Precision-recall curve", dir / "pr.png"},
              {"Confusion matrix at the operating point", dir / "confusion.png"},
              {"Reliability diagram", dir / "reliability.png"}};
  if (!r.history_csv.empty() && fs::exists(r.history_csv)) {
    plot_history(dir / "history.png", read_history_csv(r.history_csv));
    in.plots.push_back({"Training history", dir / "history.png"});
  }
  if (patches) {
    in.false_positives = most_wrong(r, *patches, 0, 12);
    in.false_negatives = most_wrong(r, *patches, 1, 12);
  }
  write_html_report(dir / "report.html", in);
}

std::vector<std::string> result_folder_names(const std::vector<ModelResult>& results) {
  std::vector<std::string> names;
  std::set<std::string> taken;
  for (const auto& r : results) {
    fs::path p(r.name);
    std::string base = p.parent_path().filename().string();
    base = (base.empty() ? "" : base + "-") + p.stem().string();
    for (auto& c : base)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') c = '_';
    std::string name = base;
    for (int k = 2; !taken.insert(name).second; ++k) name = base + "-" + std::to_string(k);
    names.push_back(name);
  }
  return names;
}

void write_comparison(const fs::path& dir, const std::vector<ModelResult>& results) {
  std::vector<Series> curves;
  std::vector<Marker> points;
  nlohmann::json models = nlohmann::json::array();
  auto names = result_folder_names(results);
  for (std::size_t i = 0; i < results.size(); ++i) {
    const auto& r = results[i];
    curves.push_back(roc_series(r));
    points.push_back(roc_marker(r));
    const auto& s = r.summary;
    models.push_back({{"checkpoint", r.name},
                      {"folder", names[i]},
                      {"auc", s.auc},
                      {"auc_ci", {s.intervals.auc.low, s.intervals.auc.high}},
                      {"accuracy", s.report.accuracy},
                      {"threshold", s.point.threshold},
                      {"sensitivity", s.point.sensitivity},
                      {"specificity", s.point.specificity},
                      {"average_precision", s.average_precision},
                      {"log_loss", s.log_loss},
                      {"brier", s.brier}});
  }
  plot_roc(dir / "roc.png", curves, points, "ROC curves");
  write_file_atomic(dir / "comparison.json", [&](std::ostream& f) { f << nlohmann::json{{"models", models}}.dump(2) << '\n'; });
}

std::string format_comparison(const std::vector<ModelResult>& results) {
  std::ostringstream out;
  char buf[256];
  std::snprintf(buf, sizeof buf, "%-32s %7s %17s %8s %9s %11s %11s\n", "model", "AUC", "95% CI", "accuracy", "threshold",
                "sensitivity", "specificity");
  out << buf;
  auto names = result_folder_names(results);
  for (std::size_t i = 0; i < results.size(); ++i) {
    const auto& s = results[i].summary;
    std::string ci = "[" + fixed(s.intervals.auc.low, 3) + ", " + fixed(s.intervals.auc.high, 3) + "]";
    const std::string& name = names[i];
    std::snprintf(buf, sizeof buf, "%-32s %7.4f %17s %8.4f %9.4f %11.4f %11.4f\n", name.c_str(), s.auc, ci.c_str(),
                  s.report.accuracy, s.point.threshold, s.point.sensitivity, s.point.specificity);
    out << buf;
  }
  return out.str();
}

}  // namespace histoscan::eval
