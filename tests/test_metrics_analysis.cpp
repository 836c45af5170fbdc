// Checks the metrics added for `histoscan metrics` (metrics.h additions and analysis.h)
// against scikit-learn 1.2 and independent numpy values recorded in
// tests/fixtures/metrics_analysis_cases.json (make_metrics_analysis_fixtures.py), and the
// bootstrap by its properties and against a slow resample-and-recompute reference.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "histoscan/eval/analysis.h"
#include "histoscan/eval/metrics.h"
#include "histoscan/util/error.h"
#include "test_util.h"

#ifndef HISTOSCAN_SOURCE_DIR
#error "HISTOSCAN_SOURCE_DIR must name the repository root"
#endif

namespace {

using nlohmann::json;
namespace ev = histoscan::eval;
using histoscan::InputError;

constexpr double kTol = 1e-9;

const json& cases() {
  static const json doc = histoscan::test::read_fixture("metrics_analysis_cases.json");
  return doc;
}

struct Case {
  std::string name;
  std::vector<int> labels;
  std::vector<double> probs;
  double threshold;
  const json* expected;
  bool one_class() const {
    const auto pos = std::count(labels.begin(), labels.end(), 1);
    return pos == 0 || pos == static_cast<long>(labels.size());
  }
};

std::vector<Case> load_cases() {
  std::vector<Case> out;
  for (const json& c : cases()) {
    out.push_back({c["name"].get<std::string>(), c["labels"].get<std::vector<int>>(), c["probs"].get<std::vector<double>>(),
                   c["threshold"].get<double>(), &c["expected"]});
  }
  return out;
}

const Case& find_case(const std::string& name) {
  static const std::vector<Case> all = load_cases();
  for (const auto& c : all) {
    if (c.name == name) return c;
  }
  throw std::runtime_error("no fixture case " + name);
}

// null in the fixture stands for NaN / undefined.
void expect_value(const json& expected, double actual, const std::string& what) {
  if (expected.is_null()) {
    EXPECT_TRUE(std::isnan(actual)) << what << " = " << actual;
  } else {
    EXPECT_NEAR(expected.get<double>(), actual, kTol) << what;
  }
}

void expect_series(const json& expected, const std::vector<double>& actual, const std::string& what) {
  ASSERT_EQ(expected.size(), actual.size()) << what;
  for (std::size_t i = 0; i < actual.size(); ++i) {
    expect_value(expected[i], actual[i], what + "[" + std::to_string(i) + "]");
  }
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no InputError)";
}

// Labels with two overlapping, rounded score distributions, like a real test set.
void synthetic(std::size_t n, std::uint64_t seed, std::vector<int>& labels, std::vector<double>& probs) {
  std::mt19937_64 rng(seed);
  std::bernoulli_distribution is_pos(0.4);
  std::normal_distribution<double> noise(0.0, 1.0);
  labels.resize(n);
  probs.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    labels[i] = is_pos(rng) ? 1 : 0;
    const double logit = noise(rng) + (labels[i] ? 1.2 : -0.8);
    probs[i] = std::round(1000.0 / (1.0 + std::exp(-logit))) / 1000.0;
  }
}

TEST(MetricsAnalysis, FixtureHasAllCases) {
  for (const char* required :
       {"realistic_600", "imbalanced_300", "all_scores_tied", "perfect_separation", "probs_exactly_0_and_1",
        "calibration_bin_edges", "tiny_n2", "one_class_negative_only", "one_class_positive_only"}) {
    EXPECT_NO_THROW(find_case(required)) << required;
  }
}

TEST(MetricsAnalysis, PrCurveAndAveragePrecisionMatchSklearn) {
  for (const auto& c : load_cases()) {
    SCOPED_TRACE(c.name);
    const json& e = *c.expected;
    const ev::PrCurve pr = ev::pr_curve(c.labels, c.probs);
    expect_series(e["pr"]["precision"], pr.precision, "precision");
    expect_series(e["pr"]["recall"], pr.recall, "recall");
    expect_series(e["pr"]["thresholds"], pr.thresholds, "thresholds");
    EXPECT_NEAR(e["average_precision"].get<double>(), ev::average_precision(c.labels, c.probs), kTol);
  }
}

TEST(MetricsAnalysis, ThresholdMetricsAndBrierMatchSklearn) {
  for (const auto& c : load_cases()) {
    SCOPED_TRACE(c.name);
    const json& e = *c.expected;
    EXPECT_NEAR(e["balanced_accuracy"].get<double>(), ev::balanced_accuracy(c.labels, c.probs, c.threshold), kTol);
    EXPECT_NEAR(e["mcc"].get<double>(), ev::matthews_corrcoef(c.labels, c.probs, c.threshold), kTol);
    EXPECT_NEAR(e["brier"].get<double>(), ev::brier_score(c.labels, c.probs), kTol);
  }
  EXPECT_THROW(ev::brier_score({0, 1}, {0.2, 1.5}), std::invalid_argument);
  EXPECT_THROW(ev::brier_score({0, 1}, {0.2}), std::invalid_argument);
}

TEST(MetricsAnalysis, CalibrationMatchesSklearn) {
  for (const auto& c : load_cases()) {
    SCOPED_TRACE(c.name);
    const json& e = (*c.expected)["calibration"];
    const ev::Calibration cal = ev::calibration(c.labels, c.probs);
    ASSERT_EQ(10u, cal.count.size());
    EXPECT_EQ(e["count"].get<std::vector<long long>>(), cal.count);
    expect_series(e["bin_lower"], cal.bin_lower, "bin_lower");
    expect_series(e["bin_upper"], cal.bin_upper, "bin_upper");
    // sklearn returns the non-empty bins only; ours keeps every bin, NaN where empty.
    std::vector<double> mean, fraction;
    for (std::size_t b = 0; b < cal.count.size(); ++b) {
      if (cal.count[b] == 0) {
        EXPECT_TRUE(std::isnan(cal.mean_predicted[b]) && std::isnan(cal.fraction_positive[b]));
        continue;
      }
      mean.push_back(cal.mean_predicted[b]);
      fraction.push_back(cal.fraction_positive[b]);
    }
    expect_series(e["mean_predicted"], mean, "mean_predicted");
    expect_series(e["fraction_positive"], fraction, "fraction_positive");
    EXPECT_NEAR(e["ece"].get<double>(), cal.ece, kTol);
  }
}

ev::CutoffRequest request_of(const json& op) {
  static const std::map<std::string, ev::CutoffRule> rules = {{"threshold", ev::CutoffRule::threshold},
                                                              {"target_sensitivity", ev::CutoffRule::target_sensitivity},
                                                              {"target_specificity", ev::CutoffRule::target_specificity},
                                                              {"youden", ev::CutoffRule::youden}};
  ev::CutoffRequest r;
  r.rule = rules.at(op["rule"].get<std::string>());
  r.value = op["value"].is_null() ? 0.0 : op["value"].get<double>();
  return r;
}

void expect_point(const json& e, const ev::OperatingPoint& p, const std::string& rule) {
  EXPECT_EQ(rule, p.rule);
  EXPECT_EQ(e["threshold"].get<double>(), p.threshold);
  const std::pair<const char*, double> rates[] = {
      {"sensitivity", p.sensitivity}, {"specificity", p.specificity}, {"ppv", p.ppv}, {"npv", p.npv}, {"f1", p.f1}};
  for (const auto& [key, actual] : rates) expect_value(e[key], actual, key);
  EXPECT_EQ(e["confusion"]["tn"].get<long long>(), p.confusion.tn);
  EXPECT_EQ(e["confusion"]["fp"].get<long long>(), p.confusion.fp);
  EXPECT_EQ(e["confusion"]["fn"].get<long long>(), p.confusion.fn);
  EXPECT_EQ(e["confusion"]["tp"].get<long long>(), p.confusion.tp);
  EXPECT_NEAR(e["missed_per_1000"].get<double>(), p.missed_per_1000, kTol);
  EXPECT_NEAR(e["false_alarms_per_1000"].get<double>(), p.false_alarms_per_1000, kTol);
}

TEST(MetricsAnalysis, OperatingPointsMatchNumpy) {
  int checked = 0, unreachable = 0;
  for (const auto& c : load_cases()) {
    for (const json& op : (*c.expected)["operating_points"]) {
      SCOPED_TRACE(c.name + " " + op.dump());
      const json& e = op["expected"];
      const ev::CutoffRequest req = request_of(op);
      if (e.contains("error")) {
        const std::string what = message_of([&] { ev::choose_operating_point(c.labels, c.probs, req); });
        const bool one_class = e["error"] == "one_class";
        EXPECT_NE(what.find(one_class ? "only one class" : "cannot be reached"), std::string::npos) << what;
        if (!one_class) {
          EXPECT_NE(what.find(histoscan::format_number(e["best"].get<double>())), std::string::npos) << what;
          ++unreachable;
        }
        EXPECT_EQ(what.find('\n'), std::string::npos) << what;
        continue;
      }
      expect_point(e, ev::choose_operating_point(c.labels, c.probs, req), op["rule"]);
      ++checked;
    }
  }
  EXPECT_GT(checked, 100);
  EXPECT_GT(unreachable, 5);
}

TEST(MetricsAnalysis, CutoffValuesOutOfRangeAreInputErrors) {
  const std::vector<int> y = {0, 1, 0, 1};
  const std::vector<double> p = {0.1, 0.9, 0.4, 0.6};
  for (auto rule : {ev::CutoffRule::threshold, ev::CutoffRule::target_sensitivity, ev::CutoffRule::target_specificity}) {
    for (double v : {-0.1, 1.5, std::nan("")}) {
      const std::string what = message_of([&] { ev::choose_operating_point(y, p, {rule, v}); });
      EXPECT_NE(what.find("outside [0, 1]"), std::string::npos) << what;
      EXPECT_EQ(what.rfind("--", 0), 0u) << what;  // names the flag
    }
  }
  const auto youden = ev::choose_operating_point(y, p, {ev::CutoffRule::youden, 7.0});
  EXPECT_EQ(0.6, youden.threshold);
  EXPECT_TRUE(std::isnan(youden.target));
}

TEST(MetricsAnalysis, SummaryAgreesWithFixtureAndParts) {
  const Case& c = find_case("realistic_600");
  const json& e = *c.expected;
  ev::SummaryOptions opt;
  opt.bootstrap = 200;
  const ev::Summary s = ev::summarize(c.labels, c.probs, opt);
  EXPECT_EQ(c.labels.size(), s.n);
  EXPECT_EQ(s.n, s.negatives + s.positives);
  EXPECT_EQ(0.5, s.point.threshold);
  EXPECT_EQ(0.5, s.report.threshold);
  EXPECT_NEAR(e["average_precision"].get<double>(), s.average_precision, kTol);
  EXPECT_NEAR(e["balanced_accuracy"].get<double>(), s.balanced_accuracy, kTol);
  EXPECT_NEAR(e["mcc"].get<double>(), s.mcc, kTol);
  EXPECT_NEAR(e["brier"].get<double>(), s.brier, kTol);
  EXPECT_NEAR(e["calibration"]["ece"].get<double>(), s.calibration.ece, kTol);
  EXPECT_EQ(ev::roc_auc(c.labels, c.probs), s.auc);
  EXPECT_EQ(ev::log_loss(c.labels, c.probs), s.log_loss);
  EXPECT_EQ(s.auc, s.intervals.auc.estimate);
  EXPECT_EQ(200, s.intervals.resamples);
  EXPECT_EQ(13u, s.intervals.seed);
  EXPECT_EQ(ev::roc_curve(c.labels, c.probs).tpr, s.roc.tpr);
  EXPECT_EQ(ev::pr_curve(c.labels, c.probs).precision, s.pr.precision);

  // The report follows the chosen operating point, not the default 0.5.
  opt.cutoff = {ev::CutoffRule::youden, 0.0};
  const ev::Summary y = ev::summarize(c.labels, c.probs, opt);
  const json& youden = e["operating_points"][2];
  ASSERT_EQ("youden", youden["rule"]);
  EXPECT_EQ(youden["expected"]["threshold"].get<double>(), y.report.threshold);
  EXPECT_EQ(y.point.confusion.tp, y.report.confusion.tp);
  EXPECT_EQ(y.point.confusion.fp, y.report.confusion.fp);
}

TEST(MetricsAnalysis, OneClassSummaryIsOneClearLine) {
  for (const char* name : {"one_class_negative_only", "one_class_positive_only"}) {
    const Case& c = find_case(name);
    const std::string what = message_of([&] { ev::summarize(c.labels, c.probs, {}); });
    EXPECT_NE(what.find("only one class"), std::string::npos) << what;
    EXPECT_NE(what.find("both classes"), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
    EXPECT_EQ(what.find("nan"), std::string::npos) << what;
  }
  const std::string what = message_of([] { ev::summarize({0, 0, 0, 0, 0, 0}, {0.1, 0.2, 0.3, 0.4, 0.5, 0.6}, {}); });
  EXPECT_NE(what.find("(6 negatives, 0 positives)"), std::string::npos) << what;
}

// The documented contract, done the slow way: draw n indices per resample from
// mt19937_64(seed) as high64(draw * n), recompute each metric from scratch, take numpy's
// linear percentiles.
double linear_percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const double h = (static_cast<double>(v.size()) - 1.0) * q / 100.0;
  const auto lo = static_cast<std::size_t>(std::floor(h));
  const std::size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (h - static_cast<double>(lo)) * (v[hi] - v[lo]);
}

void expect_naive_bootstrap(const std::vector<int>& labels, const std::vector<double>& probs, double threshold, int resamples,
                            std::uint64_t seed) {
  const std::size_t n = labels.size();
  std::mt19937_64 rng(seed);
  std::vector<double> auc, sens, spec, acc;
  int skipped = 0;
  for (int r = 0; r < resamples; ++r) {
    std::vector<int> rl(n);
    std::vector<double> rp(n);
    for (std::size_t k = 0; k < n; ++k) {
      const auto i = static_cast<std::size_t>((static_cast<unsigned __int128>(rng()) * n) >> 64);
      rl[k] = labels[i];
      rp[k] = probs[i];
    }
    const ev::Confusion c = ev::confusion_at(rl, rp, threshold);
    if (c.tp + c.fn > 0) sens.push_back(static_cast<double>(c.tp) / static_cast<double>(c.tp + c.fn));
    if (c.tn + c.fp > 0) spec.push_back(static_cast<double>(c.tn) / static_cast<double>(c.tn + c.fp));
    acc.push_back(static_cast<double>(c.tp + c.tn) / static_cast<double>(n));
    if (c.tp + c.fn == 0 || c.tn + c.fp == 0) {
      ++skipped;
    } else {
      auc.push_back(ev::roc_auc(rl, rp));
    }
  }
  const ev::BootstrapIntervals b = ev::bootstrap_intervals(labels, probs, threshold, resamples, seed);
  EXPECT_EQ(skipped, b.skipped);
  const std::pair<const ev::Interval*, std::vector<double>*> pairs[] = {
      {&b.auc, &auc}, {&b.sensitivity, &sens}, {&b.specificity, &spec}, {&b.accuracy, &acc}};
  for (const auto& [interval, values] : pairs) {
    EXPECT_NEAR(linear_percentile(*values, 2.5), interval->low, 1e-12);
    EXPECT_NEAR(linear_percentile(*values, 97.5), interval->high, 1e-12);
  }
}

TEST(MetricsAnalysis, BootstrapEqualsResamplingFromScratch) {
  std::vector<int> labels;
  std::vector<double> probs;
  synthetic(300, 5, labels, probs);
  expect_naive_bootstrap(labels, probs, 0.5, 150, 42);
  // One positive in 15: about a third of the resamples lack it and are skipped for AUC.
  std::vector<int> rare(15, 0);
  rare[4] = 1;
  const std::vector<double> rare_p = {0.1, 0.2, 0.2, 0.4, 0.7, 0.3, 0.5, 0.6, 0.1, 0.05, 0.2, 0.9, 0.3, 0.3, 0.4};
  expect_naive_bootstrap(rare, rare_p, 0.5, 300, 7);
  EXPECT_GT(ev::bootstrap_intervals(rare, rare_p, 0.5, 300, 7).skipped, 50);
}

TEST(MetricsAnalysis, BootstrapIsSeededAndBracketsTheEstimate) {
  std::vector<int> labels;
  std::vector<double> probs;
  synthetic(800, 11, labels, probs);
  const auto a = ev::bootstrap_intervals(labels, probs, 0.5, 300, 13);
  const auto b = ev::bootstrap_intervals(labels, probs, 0.5, 300, 13);
  const auto other = ev::bootstrap_intervals(labels, probs, 0.5, 300, 14);
  for (auto pick : {&ev::BootstrapIntervals::auc, &ev::BootstrapIntervals::sensitivity, &ev::BootstrapIntervals::specificity,
                    &ev::BootstrapIntervals::accuracy}) {
    const ev::Interval& i = a.*pick;
    EXPECT_EQ(i.low, (b.*pick).low);
    EXPECT_EQ(i.high, (b.*pick).high);
    EXPECT_LE(i.low, i.estimate);
    EXPECT_LE(i.estimate, i.high);
    EXPECT_LT(i.low, i.high);
  }
  EXPECT_NE(a.auc.low, other.auc.low);
  const ev::Confusion c = ev::confusion_at(labels, probs, 0.5);
  EXPECT_EQ(ev::roc_auc(labels, probs), a.auc.estimate);
  EXPECT_DOUBLE_EQ(static_cast<double>(c.tp) / static_cast<double>(c.tp + c.fn), a.sensitivity.estimate);

  const auto none = ev::bootstrap_intervals(labels, probs, 0.5, 0, 13);
  EXPECT_TRUE(std::isnan(none.auc.low) && std::isnan(none.auc.high));
  EXPECT_EQ(a.auc.estimate, none.auc.estimate);
  EXPECT_THROW(ev::bootstrap_intervals(labels, probs, 0.5, -1, 13), InputError);
  EXPECT_THROW(ev::bootstrap_intervals({0, 0}, {0.1, 0.2}, 0.5, 10, 13), InputError);
}

TEST(MetricsAnalysis, BootstrapNarrowsWithMoreData) {
  std::vector<int> small_y, large_y;
  std::vector<double> small_p, large_p;
  synthetic(200, 21, small_y, small_p);
  synthetic(5000, 22, large_y, large_p);
  const auto s = ev::bootstrap_intervals(small_y, small_p, 0.5, 400, 13);
  const auto l = ev::bootstrap_intervals(large_y, large_p, 0.5, 400, 13);
  EXPECT_LT(l.auc.high - l.auc.low, (s.auc.high - s.auc.low) / 2.0);
  EXPECT_LT(l.accuracy.high - l.accuracy.low, (s.accuracy.high - s.accuracy.low) / 2.0);
  EXPECT_LT(l.sensitivity.high - l.sensitivity.low, s.sensitivity.high - s.sensitivity.low);
  EXPECT_LT(l.specificity.high - l.specificity.low, s.specificity.high - s.specificity.low);
}

TEST(MetricsAnalysis, JsonKeepsReportKeysAndWritesNanAsNull) {
  const Case& c = find_case("all_scores_tied");  // nothing reaches 0.5: PPV undefined
  ev::SummaryOptions opt;
  opt.bootstrap = 50;
  const ev::Summary s = ev::summarize(c.labels, c.probs, opt);
  const json j = ev::to_json(s);
  for (const char* key :
       {"auc", "accuracy", "threshold", "confusion_matrix", "classes", "macro_avg", "weighted_avg", "average_precision",
        "balanced_accuracy", "mcc", "log_loss", "brier", "operating_point", "intervals", "calibration", "roc", "pr", "n"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  EXPECT_EQ(json::parse("[[4, 0], [3, 0]]"), j["confusion_matrix"]);
  EXPECT_EQ(7, j["n"].get<int>());
  EXPECT_TRUE(j["operating_point"]["ppv"].is_null());
  EXPECT_EQ("threshold", j["operating_point"]["rule"]);
  EXPECT_EQ(j["confusion_matrix"], j["operating_point"]["confusion_matrix"]);
  for (const char* key : {"auc", "sensitivity", "specificity", "accuracy"}) {
    for (const char* part : {"estimate", "low", "high"}) {
      EXPECT_TRUE(j["intervals"][key].contains(part)) << key << "." << part;
    }
  }
  EXPECT_EQ(13u, j["intervals"]["seed"].get<std::uint64_t>());
  EXPECT_EQ(10u, j["calibration"]["count"].size());
  EXPECT_TRUE(j["calibration"]["mean_predicted"][0].is_null());  // empty bin
  EXPECT_DOUBLE_EQ(0.4, j["calibration"]["mean_predicted"][3].get<double>());
  EXPECT_EQ(s.roc.fpr.size(), j["roc"]["fpr"].size());
  EXPECT_EQ(s.pr.thresholds.size(), j["pr"]["thresholds"].size());
  EXPECT_NO_THROW(json::parse(j.dump()));
}

TEST(MetricsAnalysis, SummaryTextHasAllSections) {
  const Case& c = find_case("realistic_600");
  ev::SummaryOptions opt;
  opt.bootstrap = 100;
  opt.cutoff = {ev::CutoffRule::target_sensitivity, 0.9};
  const std::string t = ev::format_summary(ev::summarize(c.labels, c.probs, opt));
  for (const char* text :
       {"predictions: 600", "sensitivity >= 0.9", "specificity", "PPV", "NPV", "missed tumours per 1,000 patches",
        "false alarms per 1,000 patches", "pred 0", "precision", "weighted avg", "ROC AUC", "average precision",
        "balanced accuracy", "Matthews", "log loss", "Brier", "95% CI", "100 resamples, seed 13", "calibration"}) {
    EXPECT_NE(t.find(text), std::string::npos) << text << "\n" << t;
  }
  const Case& tied = find_case("all_scores_tied");
  EXPECT_NE(ev::format_summary(ev::summarize(tied.labels, tied.probs, opt)).find("undefined"), std::string::npos);
}

TEST(MetricsAnalysis, ReadsPredictionsCsv) {
  histoscan::test::TempDir dir;
  // BOM, CRLF, reordered and extra columns, a quoted id, exponent notation.
  histoscan::test::write_text(dir / "p.csv",
                              "\xEF\xBB\xBFprobability,extra,id,label\r\n"
                              "0.25,x,a,0\r\n"
                              "1e-05,y,\"b,2\",1\r\n"
                              "1,z,c,1\r\n"
                              "0,w,d,0\r\n");
  const ev::Predictions p = ev::read_predictions_csv(dir / "p.csv");
  EXPECT_EQ((std::vector<std::string>{"a", "b,2", "c", "d"}), p.ids);
  EXPECT_EQ((std::vector<int>{0, 1, 1, 0}), p.labels);
  EXPECT_EQ((std::vector<double>{0.25, 1e-05, 1.0, 0.0}), p.probs);
}

TEST(MetricsAnalysis, BadPredictionsCsvNamesFileAndLine) {
  histoscan::test::TempDir dir;
  const std::string header = "id,label,probability\n";
  const struct {
    const char* name;
    std::string text;
    std::vector<std::string> needles;
  } bad[] = {
      {"label.csv", header + "a,0,0.1\nb,2,0.5\n", {"label.csv line 3", "'2'", "0 or 1"}},
      {"text.csv", header + "a,0,0.1\nb,1,high\n", {"text.csv line 3", "'high'", "[0, 1]"}},
      {"nan.csv", header + "a,0,nan\n", {"nan.csv line 2", "'nan'"}},
      {"above.csv", header + "a,0,1.5\n", {"above.csv line 2", "'1.5'"}},
      {"below.csv", header + "a,0,-0.1\n", {"below.csv line 2", "'-0.1'"}},
      {"empty_prob.csv", header + "a,0,\n", {"empty_prob.csv line 2", "''"}},
      {"missing.csv", "id,label\na,0\n", {"missing.csv", "'probability'", "id,label,probability"}},
      {"empty.csv", "", {"empty.csv"}},
      {"header_only.csv", header, {"header_only.csv", "no predictions"}},
      {"short_row.csv", header + "a,0\n", {"short_row.csv"}},
  };
  for (const auto& b : bad) {
    SCOPED_TRACE(b.name);
    histoscan::test::write_text(dir / b.name, b.text);
    const std::string what = message_of([&] { ev::read_predictions_csv(dir / b.name); });
    for (const auto& needle : b.needles) EXPECT_NE(what.find(needle), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
  }
  EXPECT_NE(message_of([&] { ev::read_predictions_csv(dir / "absent.csv"); }).find("does not exist"), std::string::npos);
  EXPECT_NE(message_of([&] { ev::read_predictions_csv(dir.path()); }).find("folder"), std::string::npos);
}

}  // namespace
