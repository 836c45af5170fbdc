// The outside faces of analysis.h: reading predictions.csv, and the JSON and terminal
// forms of a Summary.
#include <charconv>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "histoscan/eval/analysis.h"
#include "histoscan/eval/metrics_json.h"
#include "histoscan/util/error.h"
#include "histoscan/util/log.h"

#include "histoscan/util/csv.h"

namespace histoscan::eval {

namespace {

using nlohmann::json;

// from_chars, not strtod: a user's locale must not change how "0.25" reads.
bool parse_probability(const std::string& text, double& value) {
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  return ec == std::errc() && ptr == end;
}

json number(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

json numbers(const std::vector<double>& values) {
  json out = json::array();
  for (double v : values) out.push_back(number(v));
  return out;
}

json interval_json(const Interval& i) {
  return {{"estimate", number(i.estimate)}, {"low", number(i.low)}, {"high", number(i.high)}};
}

json point_json(const OperatingPoint& p) {
  const Confusion& c = p.confusion;
  return {{"rule", p.rule},
          {"target", number(p.target)},
          {"threshold", number(p.threshold)},
          {"sensitivity", number(p.sensitivity)},
          {"specificity", number(p.specificity)},
          {"ppv", number(p.ppv)},
          {"npv", number(p.npv)},
          {"f1", number(p.f1)},
          {"confusion_matrix", json::array({{c.tn, c.fp}, {c.fn, c.tp}})},
          {"missed_per_1000", number(p.missed_per_1000)},
          {"false_alarms_per_1000", number(p.false_alarms_per_1000)}};
}

std::string format(const char* spec, double v) {
  if (std::isnan(v)) return "undefined";
  char buf[64];
  std::snprintf(buf, sizeof buf, spec, v);
  return buf;
}

std::string ci(const Interval& i) {
  if (std::isnan(i.low) || std::isnan(i.high)) return "";
  return format("%.4f", i.low) + " - " + format("%.4f", i.high);
}

// One aligned line of a table: name, value, optional interval.
std::string line(const std::string& name, const std::string& value, const std::string& interval = "") {
  char buf[256];
  std::snprintf(buf, sizeof buf, "  %-34s %10s   %s", name.c_str(), value.c_str(), interval.c_str());
  std::string s = buf;
  s.erase(s.find_last_not_of(' ') + 1);
  return s + "\n";
}

std::string rule_text(const OperatingPoint& p) {
  if (p.rule == "target_sensitivity") return "highest threshold with sensitivity >= " + format_number(p.target);
  if (p.rule == "target_specificity") return "lowest threshold with specificity >= " + format_number(p.target);
  if (p.rule == "youden") return "Youden's J, max sensitivity + specificity - 1";
  return "fixed threshold";
}

std::string calibration_text(const Calibration& cal) {
  std::string out = "calibration (reliability, " + std::to_string(cal.count.size()) + " equal-width bins; ECE " +
                    format("%.4f", cal.ece) + ")\n";
  char buf[160];
  std::snprintf(buf, sizeof buf, "  %-13s %8s %15s %18s\n", "bin", "count", "mean predicted", "fraction positive");
  out += buf;
  for (std::size_t b = 0; b < cal.count.size(); ++b) {
    const std::string range = format("%.2f", cal.bin_lower[b]) + "-" + format("%.2f", cal.bin_upper[b]);
    const bool empty = cal.count[b] == 0;
    std::snprintf(buf, sizeof buf, "  %-13s %8lld %15s %18s\n", range.c_str(), cal.count[b],
                  empty ? "-" : format("%.4f", cal.mean_predicted[b]).c_str(),
                  empty ? "-" : format("%.4f", cal.fraction_positive[b]).c_str());
    out += buf;
  }
  return out;
}

}  // namespace

namespace {

// cohort.csv: slide,status,call,top_k_mean,...,label.
Predictions read_cohort_csv(const std::filesystem::path& path) {
  Predictions p;
  std::size_t left_out = 0;
  try {
    CsvReader<4> reader(path.string());
    reader.read_header(io::ignore_extra_column | io::ignore_missing_column, "slide", "status", "top_k_mean", "label");
    if (!reader.has_column("label"))
      throw InputError(path.string() +
                       ": this cohort has no labels; give them in the manifest's label column and run the scan again");
    std::string slide, status, prob, label;
    while (reader.read_row(slide, status, prob, label)) {
      const std::string at = path.string() + " line " + std::to_string(reader.get_file_line()) + ": ";
      if (status != "ok" || label.empty()) {
        ++left_out;
        continue;
      }
      if (label != "0" && label != "1") throw InputError(at + "label '" + label + "' of slide " + slide + " is not 0 or 1");
      double value = 0.0;
      if (!parse_probability(prob, value) || !(value >= 0.0 && value <= 1.0))
        throw InputError(at + "top_k_mean '" + prob + "' of slide " + slide + " is not a number in [0, 1]");
      p.ids.push_back(slide);
      p.labels.push_back(label == "1" ? 1 : 0);
      p.probs.push_back(value);
    }
  } catch (const io::error::base& e) {
    throw InputError(std::string(e.what()) + "; is this a cohort.csv written by histoscan scan?");
  }
  if (p.ids.empty()) throw InputError(path.string() + ": no scanned slide with a label");
  if (left_out) log::warn(path.string() + ": " + std::to_string(left_out) + " slides failed or have no label; left out");
  return p;
}

}  // namespace

Predictions read_predictions_csv(const std::filesystem::path& path) {
  namespace fs = std::filesystem;
  if (fs::is_directory(path)) throw InputError(path.string() + " is a folder; give the predictions CSV file itself");
  if (!fs::exists(path)) throw InputError(path.string() + " does not exist");
  {
    std::ifstream in(path);
    std::string header;
    std::getline(in, header);
    if (header.rfind("\xEF\xBB\xBF", 0) == 0) header.erase(0, 3);
    if (header.rfind("slide,status,", 0) == 0) return read_cohort_csv(path);
  }
  const std::string where = path.string() + " line ";
  Predictions p;
  try {
    CsvReader<3> reader(path.string());
    reader.read_header(io::ignore_extra_column, "id", "label", "probability");
    std::string id, label, prob;
    while (reader.read_row(id, label, prob)) {
      const std::string at = where + std::to_string(reader.get_file_line()) + ": ";
      if (id.empty()) throw InputError(at + "empty id; every row needs an id");
      if (label != "0" && label != "1")
        throw InputError(at + "label '" + label + "' of id " + id + " is not 0 or 1; labels must be 0 (no tumour) or 1 (tumour)");
      double value = 0.0;
      if (!parse_probability(prob, value) || !(value >= 0.0 && value <= 1.0))
        throw InputError(at + "probability '" + prob + "' of id " + id + " is not a number in [0, 1]; fix or drop the row");
      p.ids.push_back(id);
      p.labels.push_back(label == "1" ? 1 : 0);
      p.probs.push_back(value == 0.0 ? 0.0 : value);  // "-0" reads as -0.0
    }
  } catch (const io::error::missing_column_in_header& e) {
    throw InputError(path.string() + ": the header has no '" + e.column_name +
                     "' column; the first line must name the columns id,label,probability "
                     "(extra columns are ignored)");
  } catch (const io::error::can_not_open_file&) {
    throw InputError(path.string() + ": cannot open the file; check it exists and is readable");
  } catch (const io::error::base& e) {
    throw InputError(std::string(e.what()) + "; fix the CSV (id,label,probability)");
  }
  if (p.ids.empty()) throw InputError(path.string() + ": no predictions below the header; the file has no rows");
  return p;
}

json to_json(const Summary& s) {
  json j = report_to_json(s.report, s.auc);
  j["n"] = s.n;
  j["negatives"] = s.negatives;
  j["positives"] = s.positives;
  j["average_precision"] = number(s.average_precision);
  j["balanced_accuracy"] = number(s.balanced_accuracy);
  j["mcc"] = number(s.mcc);
  j["log_loss"] = number(s.log_loss);
  j["brier"] = number(s.brier);
  j["operating_point"] = point_json(s.point);
  const BootstrapIntervals& b = s.intervals;
  j["intervals"] = {{"auc", interval_json(b.auc)},
                    {"sensitivity", interval_json(b.sensitivity)},
                    {"specificity", interval_json(b.specificity)},
                    {"accuracy", interval_json(b.accuracy)},
                    {"confidence", 0.95},
                    {"method", "percentile bootstrap, numpy linear percentiles"},
                    {"resamples", b.resamples},
                    {"seed", b.seed},
                    {"skipped", b.skipped}};
  const Calibration& c = s.calibration;
  j["calibration"] = {{"bin_lower", numbers(c.bin_lower)},
                      {"bin_upper", numbers(c.bin_upper)},
                      {"mean_predicted", numbers(c.mean_predicted)},
                      {"fraction_positive", numbers(c.fraction_positive)},
                      {"count", c.count},
                      {"ece", number(c.ece)}};
  j["roc"] = {{"fpr", numbers(s.roc.fpr)}, {"tpr", numbers(s.roc.tpr)}, {"thresholds", numbers(s.roc.thresholds)}};
  j["pr"] = {{"precision", numbers(s.pr.precision)}, {"recall", numbers(s.pr.recall)}, {"thresholds", numbers(s.pr.thresholds)}};
  return j;
}

std::string format_summary(const Summary& s) {
  const OperatingPoint& p = s.point;
  const BootstrapIntervals& b = s.intervals;
  const std::string thr = format("%.6g", p.threshold);
  std::ostringstream out;
  out << "predictions: " << s.n << " (" << s.negatives << " negatives, " << s.positives << " positives)\n\n";
  out << "operating point: " << rule_text(p) << "\n";
  out << line("", "value", "95% CI") << line("threshold", thr)
      << line("sensitivity", format("%.4f", p.sensitivity), ci(b.sensitivity))
      << line("specificity", format("%.4f", p.specificity), ci(b.specificity)) << line("PPV", format("%.4f", p.ppv))
      << line("NPV", format("%.4f", p.npv)) << line("F1", format("%.4f", p.f1))
      << line("missed tumours per 1,000 patches", format("%.1f", p.missed_per_1000))
      << line("false alarms per 1,000 patches", format("%.1f", p.false_alarms_per_1000)) << "\n";
  out << "confusion matrix (threshold " << thr << ")\n" << format_confusion_matrix(p.confusion) << "\n";
  out << "classification report (threshold " << thr << ")\n" << format_classification_report(s.report, 4) << "\n";
  out << "metrics\n"
      << line("", "value", "95% CI") << line("ROC AUC", format("%.4f", s.auc), ci(b.auc))
      << line("average precision", format("%.4f", s.average_precision))
      << line("accuracy", format("%.4f", s.report.accuracy), ci(b.accuracy))
      << line("balanced accuracy", format("%.4f", s.balanced_accuracy)) << line("Matthews correlation", format("%.4f", s.mcc))
      << line("log loss", format("%.4f", s.log_loss)) << line("Brier score", format("%.4f", s.brier))
      << line("expected calibration error", format("%.4f", s.calibration.ece)) << "\n";
  out << calibration_text(s.calibration) << "\n";
  out << "95% CI: percentile bootstrap (2.5th-97.5th), " << b.resamples << " resamples, seed " << b.seed;
  if (b.skipped > 0) out << "; " << b.skipped << " resamples lacking a class left out of the AUC";
  out << "\n";
  return out.str();
}

}  // namespace histoscan::eval
