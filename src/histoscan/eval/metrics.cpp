#include "histoscan/eval/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>
#include <sstream>
#include <stdexcept>

namespace histoscan::eval {

const double kLogLossEps = std::numeric_limits<double>::epsilon();

namespace {

[[noreturn]] void fail(const std::string& what) { throw std::invalid_argument(what); }

// Shared checks of every entry point, so each error names the offending index.
void validate(const std::vector<int>& labels, const std::vector<double>& values, const char* values_name) {
  if (labels.size() != values.size()) {
    fail("metrics: " + std::to_string(labels.size()) + " labels but " + std::to_string(values.size()) + " " + values_name +
         "; they must pair up one to one");
  }
  if (labels.empty()) fail("metrics: no samples; labels and " + std::string(values_name) + " are empty");
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] != 0 && labels[i] != 1) {
      fail("metrics: label " + std::to_string(labels[i]) + " at index " + std::to_string(i) + "; labels must be 0 or 1");
    }
    if (!std::isfinite(values[i])) {
      fail("metrics: " + std::string(values_name) + " value at index " + std::to_string(i) + " is not finite");
    }
  }
}

// Division as sklearn's _prf_divide with zero_division="warn": 0.0 when undefined.
double ratio(long long num, long long den) { return den == 0 ? 0.0 : static_cast<double>(num) / static_cast<double>(den); }

// Same operation order as sklearn's F-beta with beta = 1, to agree to the last bit.
double f1_of(double p, double r) {
  double denom = p + r;
  if (denom == 0.0) denom = 1.0;
  return 2.0 * p * r / denom;
}

ClassStats stats_for(long long tp, long long fp, long long fn) {
  ClassStats s;
  s.precision = ratio(tp, tp + fp);
  s.recall = ratio(tp, tp + fn);
  s.f1 = f1_of(s.precision, s.recall);
  s.support = tp + fn;
  return s;
}

// Python's "{:>{width}}" for strings: right-aligned, never truncated.
std::string right(const std::string& s, int width) {
  if (static_cast<int>(s.size()) >= width) return s;
  return std::string(static_cast<std::size_t>(width) - s.size(), ' ') + s;
}

// Python's "{:.Nf}"; glibc's printf rounds the exact binary value half-to-even like CPython.
std::string fixed(double v, int digits) {
  char buf[512];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

// The binary-classifier curve of sklearn's _binary_clf_curve: for each distinct score,
// from the highest down, the cumulative false and true positives at that threshold.
struct ClfCurve {
  std::vector<long long> fps, tps;
  std::vector<double> thresholds;
};

ClfCurve binary_clf_curve(const std::vector<int>& labels, const std::vector<double>& scores) {
  std::vector<std::size_t> order(scores.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  // Order within tied scores is irrelevant: only the cumulative count after the last
  // member of each tie group is kept.
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return scores[a] > scores[b]; });
  ClfCurve c;
  long long tp = 0;
  for (std::size_t k = 0; k < order.size(); ++k) {
    tp += labels[order[k]];
    const bool last_of_group = k + 1 == order.size() || scores[order[k + 1]] != scores[order[k]];
    if (!last_of_group) continue;
    c.tps.push_back(tp);
    c.fps.push_back(static_cast<long long>(k + 1) - tp);
    c.thresholds.push_back(scores[order[k]]);
  }
  return c;
}

std::vector<double> normalised(const std::vector<long long>& counts) {
  std::vector<double> out(counts.size());
  const long long total = counts.back();
  for (std::size_t i = 0; i < counts.size(); ++i) {
    // sklearn returns NaN (with a warning) when the class is absent.
    out[i] = total <= 0 ? std::numeric_limits<double>::quiet_NaN() : static_cast<double>(counts[i]) / static_cast<double>(total);
  }
  return out;
}

}  // namespace

Confusion confusion_at(const std::vector<int>& labels, const std::vector<double>& probs, double threshold) {
  validate(labels, probs, "probabilities");
  if (std::isnan(threshold)) fail("metrics: the decision threshold is NaN");
  Confusion c;
  for (std::size_t i = 0; i < labels.size(); ++i) {
    const bool predicted = probs[i] >= threshold;
    if (labels[i] == 1) {
      (predicted ? c.tp : c.fn) += 1;
    } else {
      (predicted ? c.fp : c.tn) += 1;
    }
  }
  return c;
}

Report report_from_confusion(const Confusion& c, double threshold) {
  Report r;
  r.confusion = c;
  r.threshold = threshold;
  // Class 0's "true positives" are the true negatives: the roles of fp and fn swap.
  r.negative = stats_for(c.tn, c.fn, c.fp);
  r.positive = stats_for(c.tp, c.fp, c.fn);
  const long long total = c.tn + c.fp + c.fn + c.tp;

  r.macro_avg.precision = (r.negative.precision + r.positive.precision) / 2.0;
  r.macro_avg.recall = (r.negative.recall + r.positive.recall) / 2.0;
  r.macro_avg.f1 = (r.negative.f1 + r.positive.f1) / 2.0;
  r.macro_avg.support = total;

  const double w0 = static_cast<double>(r.negative.support);
  const double w1 = static_cast<double>(r.positive.support);
  const double wsum = w0 + w1;
  auto weighted = [&](double a, double b) { return wsum == 0.0 ? 0.0 : (a * w0 + b * w1) / wsum; };
  r.weighted_avg.precision = weighted(r.negative.precision, r.positive.precision);
  r.weighted_avg.recall = weighted(r.negative.recall, r.positive.recall);
  r.weighted_avg.f1 = weighted(r.negative.f1, r.positive.f1);
  r.weighted_avg.support = total;

  r.accuracy = ratio(c.tn + c.tp, total);
  return r;
}

Report classification_report(const std::vector<int>& labels, const std::vector<double>& probs, double threshold) {
  return report_from_confusion(confusion_at(labels, probs, threshold), threshold);
}

RocCurve roc_curve(const std::vector<int>& labels, const std::vector<double>& scores, bool drop_intermediate) {
  validate(labels, scores, "scores");
  ClfCurve c = binary_clf_curve(labels, scores);

  // Points collinear with both neighbours (zero second difference in fps and tps)
  // never change the plotted curve or its area, so sklearn drops them.
  if (drop_intermediate && c.fps.size() > 2) {
    ClfCurve kept;
    const std::size_t n = c.fps.size();
    for (std::size_t i = 0; i < n; ++i) {
      bool keep = i == 0 || i + 1 == n;
      if (!keep) {
        keep = c.fps[i - 1] - 2 * c.fps[i] + c.fps[i + 1] != 0 || c.tps[i - 1] - 2 * c.tps[i] + c.tps[i + 1] != 0;
      }
      if (!keep) continue;
      kept.fps.push_back(c.fps[i]);
      kept.tps.push_back(c.tps[i]);
      kept.thresholds.push_back(c.thresholds[i]);
    }
    c = std::move(kept);
  }

  // A leading (0, 0) point with a threshold no sample reaches (sklearn 1.2: max + 1).
  c.fps.insert(c.fps.begin(), 0);
  c.tps.insert(c.tps.begin(), 0);
  c.thresholds.insert(c.thresholds.begin(), c.thresholds.front() + 1.0);

  RocCurve roc;
  roc.fpr = normalised(c.fps);
  roc.tpr = normalised(c.tps);
  roc.thresholds = std::move(c.thresholds);
  return roc;
}

double area_under(const std::vector<double>& x, const std::vector<double>& y) {
  if (x.size() != y.size()) fail("metrics: area_under needs x and y of equal length");
  if (x.size() < 2) fail("metrics: area_under needs at least 2 points");
  bool any_down = false, all_down = true;
  for (std::size_t i = 1; i < x.size(); ++i) {
    if (x[i] < x[i - 1]) any_down = true;
    if (x[i] > x[i - 1]) all_down = false;
  }
  if (any_down && !all_down) fail("metrics: area_under needs x increasing or decreasing");
  double area = 0.0;
  for (std::size_t i = 1; i < x.size(); ++i) area += (x[i] - x[i - 1]) * (y[i] + y[i - 1]) / 2.0;
  return any_down ? -area : area;
}

double roc_auc(const std::vector<int>& labels, const std::vector<double>& scores) {
  validate(labels, scores, "scores");
  const long long positives = std::count(labels.begin(), labels.end(), 1);
  const long long negatives = static_cast<long long>(labels.size()) - positives;
  if (positives == 0 || negatives == 0) {
    fail("ROC AUC is undefined: the labels hold only one class (" + std::to_string(negatives) + " negative, " +
         std::to_string(positives) + " positive); evaluate on data with both classes");
  }
  const RocCurve roc = roc_curve(labels, scores, true);
  return area_under(roc.fpr, roc.tpr);
}

double log_loss(const std::vector<int>& labels, const std::vector<double>& probs) { return log_loss(labels, probs, kLogLossEps); }

double log_loss(const std::vector<int>& labels, const std::vector<double>& probs, double eps) {
  validate(labels, probs, "probabilities");
  if (!(eps >= 0.0 && eps < 0.5)) fail("metrics: log_loss eps must lie in [0, 0.5)");
  double sum = 0.0;
  for (std::size_t i = 0; i < labels.size(); ++i) {
    const double p_raw = probs[i];
    if (p_raw < 0.0 || p_raw > 1.0) {
      fail("metrics: probability " + std::to_string(p_raw) + " at index " + std::to_string(i) + " lies outside [0, 1]");
    }
    const double p = std::clamp(p_raw, eps, 1.0 - eps);
    const double q = 1.0 - p;
    // sklearn renormalises the two columns; (1 - p) + p is not always exactly 1.
    const double s = q + p;
    sum -= std::log((labels[i] == 1 ? p : q) / s);
  }
  return sum / static_cast<double>(labels.size());
}

PrCurve pr_curve(const std::vector<int>& labels, const std::vector<double>& scores) {
  validate(labels, scores, "scores");
  const ClfCurve c = binary_clf_curve(labels, scores);
  const long long all_positives = c.tps.back();
  PrCurve pr;
  // sklearn lists the points from the lowest threshold up, so that recall decreases.
  for (std::size_t k = c.tps.size(); k-- > 0;) {
    const double tp = static_cast<double>(c.tps[k]);
    // Every threshold is some sample's score, so at least one sample is predicted positive.
    pr.precision.push_back(tp / (tp + static_cast<double>(c.fps[k])));
    pr.recall.push_back(all_positives == 0 ? 1.0 : tp / static_cast<double>(all_positives));
    pr.thresholds.push_back(c.thresholds[k]);
  }
  pr.precision.push_back(1.0);
  pr.recall.push_back(0.0);
  return pr;
}

double average_precision(const std::vector<int>& labels, const std::vector<double>& scores) {
  const PrCurve pr = pr_curve(labels, scores);
  // sklearn's -sum(diff(recall) * precision[:-1]), each term negated exactly so that no
  // -0.0 appears when every term is zero.
  double sum = 0.0;
  for (std::size_t i = 0; i + 1 < pr.recall.size(); ++i) {
    sum += (pr.recall[i] - pr.recall[i + 1]) * pr.precision[i];
  }
  return sum;
}

double balanced_accuracy(const Confusion& c) {
  const long long negatives = c.tn + c.fp, positives = c.fn + c.tp;
  if (negatives + positives == 0) fail("metrics: balanced accuracy of an empty confusion matrix");
  // sklearn drops the recall of a class absent from the labels instead of averaging a NaN.
  if (negatives == 0) return ratio(c.tp, positives);
  if (positives == 0) return ratio(c.tn, negatives);
  return (ratio(c.tn, negatives) + ratio(c.tp, positives)) / 2.0;
}

double balanced_accuracy(const std::vector<int>& labels, const std::vector<double>& probs, double threshold) {
  return balanced_accuracy(confusion_at(labels, probs, threshold));
}

double matthews_corrcoef(const Confusion& c) {
  const double tn = static_cast<double>(c.tn), fp = static_cast<double>(c.fp);
  const double fn = static_cast<double>(c.fn), tp = static_cast<double>(c.tp);
  // sklearn's covariance form on row sums (true) and column sums (predicted); a missing
  // class only adds zero terms, so the 2x2 layout matches its smaller matrix.
  const double true0 = tn + fp, true1 = fn + tp, pred0 = tn + fn, pred1 = fp + tp;
  const double n = pred0 + pred1;
  const double cov_true_pred = (tn + tp) * n - (true0 * pred0 + true1 * pred1);
  const double cov_pred = n * n - (pred0 * pred0 + pred1 * pred1);
  const double cov_true = n * n - (true0 * true0 + true1 * true1);
  if (cov_pred * cov_true == 0.0) return 0.0;
  return cov_true_pred / std::sqrt(cov_true * cov_pred);
}

double matthews_corrcoef(const std::vector<int>& labels, const std::vector<double>& probs, double threshold) {
  return matthews_corrcoef(confusion_at(labels, probs, threshold));
}

double brier_score(const std::vector<int>& labels, const std::vector<double>& probs) {
  validate(labels, probs, "probabilities");
  double sum = 0.0;
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (probs[i] < 0.0 || probs[i] > 1.0) {
      fail("metrics: probability " + std::to_string(probs[i]) + " at index " + std::to_string(i) + " lies outside [0, 1]");
    }
    const double d = static_cast<double>(labels[i]) - probs[i];
    sum += d * d;
  }
  return sum / static_cast<double>(labels.size());
}

std::string format_classification_report(const Report& r, int digits) {
  if (digits < 0 || digits > 100) fail("metrics: report digits must lie in [0, 100]");
  const Confusion& c = r.confusion;
  const int width = std::max({1, 12, digits});  // names "0"/"1", "weighted avg", digits
  // sklearn 1.2 quirk: when no sample is classified correctly its supports come out of a
  // float array and print as "5.0"; reproduced so the text stays byte-identical.
  const bool float_support = c.tn + c.tp == 0;
  auto support = [&](long long n) { return std::to_string(n) + (float_support ? ".0" : ""); };
  auto row = [&](const std::string& name, const ClassStats& s) {
    return right(name, width) + " " + " " + right(fixed(s.precision, digits), 9) + " " + right(fixed(s.recall, digits), 9) + " " +
           right(fixed(s.f1, digits), 9) + " " + right(support(s.support), 9) + "\n";
  };
  std::string out = right("", width) + " " + " " + right("precision", 9) + " " + right("recall", 9) + " " + right("f1-score", 9) +
                    " " + right("support", 9);
  out += "\n\n";
  out += row("0", r.negative);
  out += row("1", r.positive);
  out += "\n";

  // sklearn (labels=[0, 1]) prints "accuracy" only when both labels occur in y_true or
  // y_pred; otherwise a full "micro avg" row, whose values all equal the accuracy.
  const bool zero_seen = c.tn + c.fp + c.fn > 0;
  const bool one_seen = c.tp + c.fn + c.fp > 0;
  const long long total = c.tn + c.fp + c.fn + c.tp;
  if (zero_seen && one_seen) {
    out += right("accuracy", width) + " " + " " + right("", 9) + " " + right("", 9) + " " + right(fixed(r.accuracy, digits), 9) +
           " " + right(support(total), 9) + "\n";
  } else {
    ClassStats micro;
    micro.precision = micro.recall = r.accuracy;
    micro.f1 = f1_of(r.accuracy, r.accuracy);
    micro.support = total;
    out += row("micro avg", micro);
  }
  out += row("macro avg", r.macro_avg);
  out += row("weighted avg", r.weighted_avg);
  return out;
}

std::string format_confusion_matrix(const Confusion& c) {
  const std::string cells[4] = {std::to_string(c.tn), std::to_string(c.fp), std::to_string(c.fn), std::to_string(c.tp)};
  int w = static_cast<int>(std::string("pred 0").size());
  for (const auto& s : cells) w = std::max(w, static_cast<int>(s.size()));
  const int label_w = static_cast<int>(std::string("true 1").size());
  std::ostringstream os;
  os << right("", label_w) << "  " << right("pred 0", w) << "  " << right("pred 1", w) << "\n";
  os << right("true 0", label_w) << "  " << right(cells[0], w) << "  " << right(cells[1], w) << "\n";
  os << right("true 1", label_w) << "  " << right(cells[2], w) << "  " << right(cells[3], w) << "\n";
  return os.str();
}

}  // namespace histoscan::eval
