#include "histoscan/eval/analysis.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <stdexcept>
#include <tuple>
#include <utility>

#include "histoscan/util/error.h"

namespace histoscan::eval {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// Programming errors (the CSV reader rules these out), hence not InputError.
void check_pairs(const std::vector<int>& labels, const std::vector<double>& probs) {
  if (labels.size() != probs.size()) {
    throw std::invalid_argument("analysis: " + std::to_string(labels.size()) + " labels but " + std::to_string(probs.size()) +
                                " probabilities");
  }
  if (labels.empty()) throw std::invalid_argument("analysis: no predictions");
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if ((labels[i] != 0 && labels[i] != 1) || !std::isfinite(probs[i])) {
      throw std::invalid_argument("analysis: label or probability at index " + std::to_string(i) + " is not 0/1 or not finite");
    }
  }
}

// {negatives, positives}; a one-class set is the user's to fix (wrong split, wrong file).
std::pair<std::size_t, std::size_t> require_both_classes(const std::vector<int>& labels) {
  const auto positives = static_cast<std::size_t>(std::count(labels.begin(), labels.end(), 1));
  const std::size_t negatives = labels.size() - positives;
  if (positives == 0 || negatives == 0) {
    throw InputError("the labels hold only one class (" + std::to_string(negatives) + " negatives, " + std::to_string(positives) +
                     " positives): AUC, sensitivity/specificity are undefined; evaluate on data "
                     "holding both classes");
  }
  return {negatives, positives};
}

double ratio_or_nan(long long num, long long den) {
  return den == 0 ? kNaN : static_cast<double>(num) / static_cast<double>(den);
}

// Cumulative counts at each distinct probability, highest first: at thresholds[k],
// tp[k] positives and fp[k] negatives have probability >= thresholds[k].
struct Candidates {
  std::vector<double> thresholds;
  std::vector<long long> tp, fp;
  long long positives = 0, negatives = 0;
};

Candidates candidates_of(const std::vector<int>& labels, const std::vector<double>& probs) {
  std::vector<std::size_t> order(probs.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return probs[a] > probs[b]; });
  Candidates c;
  long long tp = 0, fp = 0;
  for (std::size_t k = 0; k < order.size(); ++k) {
    (labels[order[k]] == 1 ? tp : fp) += 1;
    if (k + 1 < order.size() && probs[order[k + 1]] == probs[order[k]]) continue;
    c.thresholds.push_back(probs[order[k]]);
    c.tp.push_back(tp);
    c.fp.push_back(fp);
  }
  c.positives = tp;
  c.negatives = fp;
  return c;
}

const char* flag_of(CutoffRule rule) {
  switch (rule) {
    case CutoffRule::threshold:
      return "--threshold";
    case CutoffRule::target_sensitivity:
      return "--target-sensitivity";
    case CutoffRule::target_specificity:
      return "--target-specificity";
    case CutoffRule::youden:
      return "--youden";
  }
  return "?";
}

const char* name_of(CutoffRule rule) {
  switch (rule) {
    case CutoffRule::threshold:
      return "threshold";
    case CutoffRule::target_sensitivity:
      return "target_sensitivity";
    case CutoffRule::target_specificity:
      return "target_specificity";
    case CutoffRule::youden:
      return "youden";
  }
  return "?";
}

// Sensitivity falls as the threshold rises and specificity rises, so the first candidate
// met walking away from the "easy" end is the one the rule names.
std::size_t pick_target(const Candidates& c, CutoffRule rule, double target) {
  const bool sens = rule == CutoffRule::target_sensitivity;
  const long long total = sens ? c.positives : c.negatives;
  const std::size_t m = c.thresholds.size();
  auto hits = [&](std::size_t k) { return sens ? c.tp[k] : c.negatives - c.fp[k]; };
  for (std::size_t step = 0; step < m; ++step) {
    const std::size_t k = sens ? step : m - 1 - step;
    if (static_cast<double>(hits(k)) / static_cast<double>(total) >= target) return k;
  }
  // Unreachable: the best is at the far end, the lowest (highest) candidate threshold.
  const std::size_t best = sens ? m - 1 : 0;
  const long long h = hits(best);
  throw InputError(std::string(flag_of(rule)) + " " + format_number(target) + " cannot be reached: the best " +
                   (sens ? "sensitivity" : "specificity") + " at any candidate threshold (the distinct probabilities) is " +
                   std::to_string(h) + "/" + std::to_string(total) + " = " +
                   format_number(static_cast<double>(h) / static_cast<double>(total)) + " (threshold " +
                   format_number(c.thresholds[best]) + "); ask for at most that");
}

// Youden's J = tp/P - fp/N, compared as tp*N - fp*P so that ties are exact.
std::size_t pick_youden(const Candidates& c) {
  std::size_t best = 0;
  long long best_j = std::numeric_limits<long long>::min();
  for (std::size_t k = 0; k < c.thresholds.size(); ++k) {  // highest threshold first
    const long long j = c.tp[k] * c.negatives - c.fp[k] * c.positives;
    if (j > best_j) {
      best_j = j;
      best = k;
    }
  }
  return best;
}

OperatingPoint point_from(const Confusion& c, double threshold) {
  OperatingPoint p;
  p.threshold = threshold;
  p.confusion = c;
  p.sensitivity = ratio_or_nan(c.tp, c.tp + c.fn);
  p.specificity = ratio_or_nan(c.tn, c.tn + c.fp);
  p.ppv = ratio_or_nan(c.tp, c.tp + c.fp);
  p.npv = ratio_or_nan(c.tn, c.tn + c.fn);
  p.f1 = ratio_or_nan(2 * c.tp, 2 * c.tp + c.fp + c.fn);
  const double n = static_cast<double>(c.tn + c.fp + c.fn + c.tp);
  p.missed_per_1000 = static_cast<double>(c.fn) / n * 1000.0;
  p.false_alarms_per_1000 = static_cast<double>(c.fp) / n * 1000.0;
  return p;
}

// numpy.percentile(sorted, q) with its default method="linear", including its _lerp.
double percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return kNaN;
  const double index = (static_cast<double>(sorted.size()) - 1.0) * (q / 100.0);
  const auto below = static_cast<std::size_t>(std::floor(index));
  const std::size_t above = std::min(below + 1, sorted.size() - 1);
  const double t = index - static_cast<double>(below);
  const double a = sorted[below], b = sorted[above], diff = b - a;
  return t >= 0.5 ? b - diff * (1.0 - t) : a + diff * t;
}

Interval interval_of(double estimate, std::vector<double>& values) {
  std::sort(values.begin(), values.end());
  return {estimate, percentile(values, 2.5), percentile(values, 97.5)};
}

// Rows sorted once by probability, so each resample is tallied by a linear pass over its
// multiplicities instead of a sort.
struct Ranked {
  std::vector<std::size_t> row;        // original row, ascending probability
  std::vector<std::size_t> group_end;  // one past the last position of each tie group
  std::vector<char> group_positive;    // the group's probability >= threshold
};

Ranked rank_rows(const std::vector<double>& probs, double threshold) {
  Ranked r;
  r.row.resize(probs.size());
  std::iota(r.row.begin(), r.row.end(), std::size_t{0});
  std::sort(r.row.begin(), r.row.end(), [&](std::size_t a, std::size_t b) { return probs[a] < probs[b]; });
  for (std::size_t k = 0; k < r.row.size(); ++k) {
    if (k + 1 < r.row.size() && probs[r.row[k + 1]] == probs[r.row[k]]) continue;
    r.group_end.push_back(k + 1);
    r.group_positive.push_back(probs[r.row[k]] >= threshold ? 1 : 0);
  }
  return r;
}

// Confusion counts of one resample and twice its Mann-Whitney numerator (ties count half).
struct Tally {
  Confusion c;
  long long auc_numerator2 = 0;
};

Tally tally(const Ranked& r, const std::vector<int>& labels, const std::vector<int>& weight) {
  Tally t;
  long long negatives_below = 0;
  std::size_t k = 0;
  for (std::size_t g = 0; g < r.group_end.size(); ++g) {
    long long w0 = 0, w1 = 0;
    for (; k < r.group_end[g]; ++k) (labels[r.row[k]] == 1 ? w1 : w0) += weight[r.row[k]];
    t.auc_numerator2 += w1 * (2 * negatives_below + w0);
    negatives_below += w0;
    if (r.group_positive[g]) {
      t.c.tp += w1;
      t.c.fp += w0;
    } else {
      t.c.fn += w1;
      t.c.tn += w0;
    }
  }
  return t;
}

// Uniform index in [0, n): the high half of a 64x64-bit product (Lemire); its bias, at
// most n / 2^64, is far below bootstrap noise, and unlike std::uniform_int_distribution
// the result does not depend on the standard library (needs GCC/Clang's __int128).
std::size_t draw_index(std::mt19937_64& rng, std::size_t n) {
  return static_cast<std::size_t>((static_cast<unsigned __int128>(rng()) * n) >> 64);
}

}  // namespace

OperatingPoint choose_operating_point(const std::vector<int>& labels, const std::vector<double>& probs,
                                      const CutoffRequest& request) {
  check_pairs(labels, probs);
  require_both_classes(labels);
  const bool has_value = request.rule != CutoffRule::youden;
  if (has_value && !(request.value >= 0.0 && request.value <= 1.0)) {
    throw InputError(std::string(flag_of(request.rule)) + " " + format_number(request.value) +
                     " lies outside [0, 1]; give a fraction such as 0.95");
  }
  double threshold = request.value;
  if (request.rule != CutoffRule::threshold) {
    const Candidates c = candidates_of(labels, probs);
    const std::size_t k = request.rule == CutoffRule::youden ? pick_youden(c) : pick_target(c, request.rule, request.value);
    threshold = c.thresholds[k];
  }
  OperatingPoint p = point_from(confusion_at(labels, probs, threshold), threshold);
  p.rule = name_of(request.rule);
  p.target = has_value ? request.value : kNaN;
  return p;
}

BootstrapIntervals bootstrap_intervals(const std::vector<int>& labels, const std::vector<double>& probs, double threshold,
                                       int resamples, std::uint64_t seed) {
  check_pairs(labels, probs);
  require_both_classes(labels);
  if (resamples < 0) {
    throw InputError("--bootstrap " + std::to_string(resamples) +
                     " is negative; give the number of resamples (0 to skip intervals)");
  }
  const Confusion full = confusion_at(labels, probs, threshold);
  const std::size_t n = labels.size();
  const Ranked ranked = rank_rows(probs, threshold);
  std::vector<double> auc, sens, spec, acc;
  std::vector<int> weight(n);
  std::mt19937_64 rng(seed);
  BootstrapIntervals out;
  out.resamples = resamples;
  out.seed = seed;
  for (int r = 0; r < resamples; ++r) {
    std::fill(weight.begin(), weight.end(), 0);
    for (std::size_t k = 0; k < n; ++k) ++weight[draw_index(rng, n)];
    const Tally t = tally(ranked, labels, weight);
    const long long pos = t.c.tp + t.c.fn, neg = t.c.tn + t.c.fp;
    if (pos > 0) sens.push_back(static_cast<double>(t.c.tp) / static_cast<double>(pos));
    if (neg > 0) spec.push_back(static_cast<double>(t.c.tn) / static_cast<double>(neg));
    acc.push_back(static_cast<double>(t.c.tp + t.c.tn) / static_cast<double>(n));
    if (pos == 0 || neg == 0) {
      ++out.skipped;
      continue;
    }
    auc.push_back(static_cast<double>(t.auc_numerator2) / (2.0 * static_cast<double>(pos) * static_cast<double>(neg)));
  }
  const OperatingPoint point = point_from(full, threshold);
  out.auc = interval_of(roc_auc(labels, probs), auc);
  out.sensitivity = interval_of(point.sensitivity, sens);
  out.specificity = interval_of(point.specificity, spec);
  out.accuracy = interval_of(static_cast<double>(full.tp + full.tn) / static_cast<double>(n), acc);
  return out;
}

Calibration calibration(const std::vector<int>& labels, const std::vector<double>& probs, int bins) {
  check_pairs(labels, probs);
  if (bins < 1) throw std::invalid_argument("analysis: calibration needs at least one bin");
  // Edges as numpy.linspace(0, 1, bins + 1) computes them: i * (1 / bins), last exactly 1.
  const double step = 1.0 / static_cast<double>(bins);
  std::vector<double> edges(static_cast<std::size_t>(bins) + 1);
  for (std::size_t i = 0; i < edges.size(); ++i) edges[i] = static_cast<double>(i) * step;
  edges.back() = 1.0;
  const auto nb = static_cast<std::size_t>(bins);
  std::vector<double> sum_prob(nb, 0.0), sum_true(nb, 0.0);
  Calibration cal;
  cal.count.assign(nb, 0);
  for (std::size_t i = 0; i < probs.size(); ++i) {
    if (probs[i] < 0.0 || probs[i] > 1.0) {
      throw std::invalid_argument("analysis: probability at index " + std::to_string(i) + " lies outside [0, 1]");
    }
    // sklearn's searchsorted(inner edges, p, side="left"): a value on an edge belongs
    // to the bin below it.
    const auto bin =
        static_cast<std::size_t>(std::lower_bound(edges.begin() + 1, edges.end() - 1, probs[i]) - (edges.begin() + 1));
    sum_prob[bin] += probs[i];
    sum_true[bin] += labels[i];
    ++cal.count[bin];
  }
  const double n = static_cast<double>(probs.size());
  for (std::size_t b = 0; b < nb; ++b) {
    cal.bin_lower.push_back(edges[b]);
    cal.bin_upper.push_back(edges[b + 1]);
    const double count = static_cast<double>(cal.count[b]);
    cal.mean_predicted.push_back(cal.count[b] == 0 ? kNaN : sum_prob[b] / count);
    cal.fraction_positive.push_back(cal.count[b] == 0 ? kNaN : sum_true[b] / count);
    if (cal.count[b] > 0) {
      cal.ece += count / n * std::fabs(cal.mean_predicted[b] - cal.fraction_positive[b]);
    }
  }
  return cal;
}

Summary summarize(const std::vector<int>& labels, const std::vector<double>& probs, const SummaryOptions& options) {
  check_pairs(labels, probs);
  Summary s;
  std::tie(s.negatives, s.positives) = require_both_classes(labels);
  s.n = labels.size();
  s.point = choose_operating_point(labels, probs, options.cutoff);
  s.report = classification_report(labels, probs, s.point.threshold);
  s.auc = roc_auc(labels, probs);
  s.average_precision = average_precision(labels, probs);
  s.balanced_accuracy = balanced_accuracy(s.report.confusion);
  s.mcc = matthews_corrcoef(s.report.confusion);
  s.log_loss = log_loss(labels, probs);
  s.brier = brier_score(labels, probs);
  s.intervals = bootstrap_intervals(labels, probs, s.point.threshold, options.bootstrap, options.seed);
  s.calibration = calibration(labels, probs);
  s.roc = roc_curve(labels, probs);
  s.pr = pr_curve(labels, probs);
  return s;
}

}  // namespace histoscan::eval
