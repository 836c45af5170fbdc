#pragma once
// What `histoscan metrics PREDICTIONS.csv` reports: the sklearn-equal metrics of
// metrics.h plus an operating point chosen by a clinical rule, percentile-bootstrap
// confidence intervals and calibration, all computed from (label, probability) pairs
// alone so that any model's predictions can be re-scored the same way.
//
// Errors: InputError (one line) for what a user can fix: labels of one class only, a
// target that no threshold reaches, a flag value out of range, a malformed CSV.
// std::invalid_argument (from metrics.h) for mismatched or non-finite inputs, which the
// CSV reader already rules out.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "histoscan/eval/metrics.h"

namespace histoscan::eval {

// How the decision threshold is chosen; the candidates of the target and Youden rules
// are the distinct probabilities, and a sample is positive iff probability >= threshold.
enum class CutoffRule {
  threshold,           // value is the threshold itself (--threshold T)
  target_sensitivity,  // highest threshold whose sensitivity >= value
  target_specificity,  // lowest threshold whose specificity >= value
  youden,              // maximises sensitivity + specificity - 1; ties go to the higher
};

// A rule and its value (the threshold, or the sensitivity/specificity to reach).
struct CutoffRequest {
  CutoffRule rule = CutoffRule::threshold;
  double value = 0.5;
};

// The confusion matrix and derived rates at one threshold. ppv/npv are NaN when nothing
// is predicted positive/negative (printed "undefined", null in JSON).
struct OperatingPoint {
  std::string rule;     // "threshold", "target_sensitivity", "target_specificity", "youden"
  double target = 0.0;  // the request's value; NaN for youden
  double threshold = 0.5, sensitivity = 0.0, specificity = 0.0, ppv = 0.0, npv = 0.0, f1 = 0.0;
  Confusion confusion;
  double missed_per_1000 = 0.0;        // false negatives / n * 1000
  double false_alarms_per_1000 = 0.0;  // false positives / n * 1000
};

// Applies the request. InputError when the labels hold one class, the value lies outside
// [0, 1], or the target cannot be reached (the message names the best reachable value).
OperatingPoint choose_operating_point(const std::vector<int>& labels, const std::vector<double>& probs,
                                      const CutoffRequest& request);

// A point estimate (on the full data) with its 95% interval; low/high are NaN when no
// resample defined the statistic (or none was drawn).
struct Interval {
  double estimate = 0.0, low = 0.0, high = 0.0;
};

// 95% percentile-bootstrap intervals. Resample r draws n row indices with replacement
// from one std::mt19937_64(seed) stream (index = high 64 bits of draw * n, portable
// unlike std::uniform_int_distribution); low/high are the 2.5th/97.5th percentiles
// with numpy's default linear interpolation. Resamples lacking a class (`skipped`) are
// left out of the AUC interval; sensitivity/specificity skip those lacking positives/
// negatives. The threshold stays fixed: the interval ignores how it was chosen.
struct BootstrapIntervals {
  Interval auc, sensitivity, specificity, accuracy;
  int resamples = 0;
  std::uint64_t seed = 0;
  int skipped = 0;
};

// Bootstrap intervals at `threshold`; resamples >= 0 (0 gives NaN bounds), both classes
// present (InputError otherwise). O(resamples * n) after one sort.
BootstrapIntervals bootstrap_intervals(const std::vector<int>& labels, const std::vector<double>& probs, double threshold,
                                       int resamples, std::uint64_t seed);

// Reliability curve over `bins` equal-width bins of [0, 1], every bin kept. Binning and
// the non-empty bins' values equal sklearn 1.2's calibration_curve(strategy="uniform");
// an empty bin has count 0 and NaN mean/fraction. ece = sum of count/n * |mean - fraction|.
struct Calibration {
  std::vector<double> bin_lower, bin_upper, mean_predicted, fraction_positive;
  std::vector<long long> count;
  double ece = 0.0;
};

// Calibration of probabilities in [0, 1]; bins >= 1.
Calibration calibration(const std::vector<int>& labels, const std::vector<double>& probs, int bins = 10);

// Rows of a predictions CSV, in file order.
struct Predictions {
  std::vector<std::string> ids;
  std::vector<int> labels;
  std::vector<double> probs;
};

// Reads a CSV whose header names id,label,probability (any order, extra columns ignored,
// UTF-8 BOM and CRLF accepted). InputError naming the file and line for a missing column,
// a label other than 0/1, a probability that is not a number in [0, 1], or no rows.
// A cohort.csv of `histoscan scan` (header slide,status,...) is read as the slides' top-k
// means against their labels: rows that failed or have no label are left out.
Predictions read_predictions_csv(const std::filesystem::path& path);

// Choices of `histoscan metrics`: the cut-off and the bootstrap.
struct SummaryOptions {
  CutoffRequest cutoff;
  int bootstrap = 1000;
  std::uint64_t seed = 13;
};

// Everything reported; report, balanced_accuracy and mcc are at point.threshold.
struct Summary {
  std::size_t n = 0, negatives = 0, positives = 0;
  Report report;
  double auc = 0.0, average_precision = 0.0, balanced_accuracy = 0.0, mcc = 0.0;
  double log_loss = 0.0, brier = 0.0;
  OperatingPoint point;
  BootstrapIntervals intervals;
  Calibration calibration;
  RocCurve roc;
  PrCurve pr;
};

// Computes the Summary. InputError (one line) when the labels hold one class only.
Summary summarize(const std::vector<int>& labels, const std::vector<double>& probs, const SummaryOptions& options);

// report_to_json(report, auc) plus n, negatives, positives, average_precision,
// balanced_accuracy, mcc, log_loss, brier, operating_point, intervals, calibration,
// roc and pr. NaN becomes null.
nlohmann::json to_json(const Summary& s);

// Terminal text: operating point, confusion matrix, classification report (4 digits)
// and a table of metrics with their 95% intervals.
std::string format_summary(const Summary& s);

}  // namespace histoscan::eval
