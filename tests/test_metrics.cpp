// Checks histoscan::eval against scikit-learn 1.2 reference values recorded in
// tests/fixtures/metrics_cases.json (see make_metrics_fixtures.py to regenerate).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "histoscan/eval/metrics.h"
#include "histoscan/eval/metrics_json.h"
#include "test_util.h"

#ifndef HISTOSCAN_SOURCE_DIR
#error "HISTOSCAN_SOURCE_DIR must name the repository root"
#endif

namespace {

using nlohmann::json;
namespace ev = histoscan::eval;

constexpr double kTol = 1e-9;

const json& cases() {
  static const json doc = histoscan::test::read_fixture("metrics_cases.json");
  return doc;
}

// The fixture writes sklearn's NaN (undefined ROC axis) as null.
void expect_series(const json& expected, const std::vector<double>& actual, const std::string& what) {
  ASSERT_EQ(expected.size(), actual.size()) << what;
  for (std::size_t i = 0; i < actual.size(); ++i) {
    if (expected[i].is_null()) {
      EXPECT_TRUE(std::isnan(actual[i])) << what << "[" << i << "]";
    } else {
      EXPECT_NEAR(expected[i].get<double>(), actual[i], kTol) << what << "[" << i << "]";
    }
  }
}

void expect_stats(const json& e, const ev::ClassStats& s, const std::string& what) {
  EXPECT_NEAR(e["precision"].get<double>(), s.precision, kTol) << what;
  EXPECT_NEAR(e["recall"].get<double>(), s.recall, kTol) << what;
  EXPECT_NEAR(e["f1"].get<double>(), s.f1, kTol) << what;
  EXPECT_EQ(e["support"].get<long long>(), s.support) << what;
}

struct Case {
  std::string name;
  std::vector<int> labels;
  std::vector<double> probs;
  double threshold;
  const json* expected;
};

std::vector<Case> load_cases() {
  std::vector<Case> out;
  for (const json& c : cases()) {
    out.push_back({c["name"].get<std::string>(), c["labels"].get<std::vector<int>>(), c["probs"].get<std::vector<double>>(),
                   c["threshold"].get<double>(), &c["expected"]});
  }
  return out;
}

TEST(Metrics, FixtureHasAllCases) {
  const auto all = load_cases();
  EXPECT_GE(all.size(), 7u);
  std::vector<std::string> names;
  names.reserve(all.size());
  for (const auto& c : all) names.push_back(c.name);
  for (const char* required : {"realistic_500", "all_scores_tied", "one_class_only", "perfect_separation",
                               "probs_exactly_0_and_1", "no_predicted_positive", "tiny_n2"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), required), names.end()) << required;
  }
}

TEST(Metrics, RocCurveMatchesSklearn) {
  for (const auto& c : load_cases()) {
    SCOPED_TRACE(c.name);
    const json& e = *c.expected;
    const auto roc = ev::roc_curve(c.labels, c.probs);
    expect_series(e["roc"]["fpr"], roc.fpr, "fpr");
    expect_series(e["roc"]["tpr"], roc.tpr, "tpr");
    expect_series(e["roc"]["thresholds"], roc.thresholds, "thresholds");
    const auto all = ev::roc_curve(c.labels, c.probs, /*drop_intermediate=*/false);
    expect_series(e["roc_all"]["fpr"], all.fpr, "fpr (all)");
    expect_series(e["roc_all"]["tpr"], all.tpr, "tpr (all)");
    expect_series(e["roc_all"]["thresholds"], all.thresholds, "thresholds (all)");
  }
}

TEST(Metrics, RocAucMatchesSklearn) {
  for (const auto& c : load_cases()) {
    SCOPED_TRACE(c.name);
    const json& e = (*c.expected)["auc"];
    if (e.is_null()) {
      EXPECT_THROW(ev::roc_auc(c.labels, c.probs), std::invalid_argument);
    } else {
      EXPECT_NEAR(e.get<double>(), ev::roc_auc(c.labels, c.probs), kTol);
    }
  }
}

TEST(Metrics, ClassificationReportMatchesSklearn) {
  for (const auto& c : load_cases()) {
    SCOPED_TRACE(c.name);
    const json& e = *c.expected;
    const auto r = ev::classification_report(c.labels, c.probs, c.threshold);
    EXPECT_EQ(e["confusion"]["tn"].get<long long>(), r.confusion.tn);
    EXPECT_EQ(e["confusion"]["fp"].get<long long>(), r.confusion.fp);
    EXPECT_EQ(e["confusion"]["fn"].get<long long>(), r.confusion.fn);
    EXPECT_EQ(e["confusion"]["tp"].get<long long>(), r.confusion.tp);
    expect_stats(e["classes"]["0"], r.negative, "class 0");
    expect_stats(e["classes"]["1"], r.positive, "class 1");
    expect_stats(e["macro_avg"], r.macro_avg, "macro avg");
    expect_stats(e["weighted_avg"], r.weighted_avg, "weighted avg");
    EXPECT_NEAR(e["accuracy"].get<double>(), r.accuracy, kTol);
    EXPECT_EQ(c.threshold, r.threshold);
  }
}

TEST(Metrics, ReportTextMatchesSklearnExactly) {
  for (const auto& c : load_cases()) {
    SCOPED_TRACE(c.name);
    const auto r = ev::classification_report(c.labels, c.probs, c.threshold);
    EXPECT_EQ((*c.expected)["report_text"]["2"].get<std::string>(), ev::format_classification_report(r));
    EXPECT_EQ((*c.expected)["report_text"]["4"].get<std::string>(), ev::format_classification_report(r, 4));
  }
}

TEST(Metrics, LogLossMatchesSklearn) {
  for (const auto& c : load_cases()) {
    SCOPED_TRACE(c.name);
    const json& e = *c.expected;
    EXPECT_NEAR(e["log_loss"].get<double>(), ev::log_loss(c.labels, c.probs), kTol);
    EXPECT_NEAR(e["log_loss_eps_1e15"].get<double>(), ev::log_loss(c.labels, c.probs, 1e-15), kTol);
  }
}

TEST(Metrics, OneClassAucThrowsClearMessage) {
  try {
    ev::roc_auc({0, 0, 0}, {0.1, 0.5, 0.9});
    FAIL() << "expected std::invalid_argument";
  } catch (const std::invalid_argument& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("one class"), std::string::npos) << what;
    EXPECT_NE(what.find("3 negative, 0 positive"), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
  }
}

TEST(Metrics, InvalidInputThrows) {
  const std::vector<int> labels = {0, 1, 1};
  const std::vector<double> short_probs = {0.2, 0.8};
  EXPECT_THROW(ev::roc_auc(labels, short_probs), std::invalid_argument);
  EXPECT_THROW(ev::classification_report(labels, short_probs), std::invalid_argument);
  EXPECT_THROW(ev::log_loss(labels, short_probs), std::invalid_argument);
  EXPECT_THROW(ev::roc_curve(labels, short_probs), std::invalid_argument);

  EXPECT_THROW(ev::classification_report({0, 2, 1}, {0.1, 0.2, 0.3}), std::invalid_argument);
  EXPECT_THROW(ev::roc_auc({0, 2, 1}, {0.1, 0.2, 0.3}), std::invalid_argument);
  EXPECT_THROW(ev::roc_auc({0, -1, 1}, {0.1, 0.2, 0.3}), std::invalid_argument);

  EXPECT_THROW(ev::roc_auc({}, {}), std::invalid_argument);
  EXPECT_THROW(ev::confusion_at({}, {}, 0.5), std::invalid_argument);

  const double nan = std::nan("");
  const double inf = HUGE_VAL;
  EXPECT_THROW(ev::roc_auc(labels, {0.1, nan, 0.3}), std::invalid_argument);
  EXPECT_THROW(ev::log_loss(labels, {0.1, inf, 0.3}), std::invalid_argument);
  EXPECT_THROW(ev::log_loss(labels, {0.1, 1.5, 0.3}), std::invalid_argument);

  try {
    ev::roc_auc({0, 2, 1}, {0.1, 0.2, 0.3});
  } catch (const std::invalid_argument& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("index 1"), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << what;
  }
}

// AUC equals the Mann-Whitney probability P(s+ > s-) + P(s+ == s-)/2; computed here via
// mid-ranks, independently of the ROC code, on an input as large as a real test set.
TEST(Metrics, LargeInputAucEqualsRankStatistic) {
  const std::size_t n = 300000;
  std::mt19937_64 rng(7);
  std::bernoulli_distribution is_pos(0.35);
  std::normal_distribution<double> noise(0.0, 1.0);
  std::vector<int> labels(n);
  std::vector<double> scores(n);
  for (std::size_t i = 0; i < n; ++i) {
    labels[i] = is_pos(rng) ? 1 : 0;
    // Rounded so that ties are common, as with quantised network outputs.
    scores[i] = std::round((noise(rng) + (labels[i] ? 0.8 : 0.0)) * 100.0) / 100.0;
  }
  std::vector<std::size_t> order(n);
  for (std::size_t i = 0; i < n; ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return scores[a] < scores[b]; });
  double pos_rank_sum = 0.0;
  long long pos = 0;
  for (std::size_t i = 0; i < n;) {
    std::size_t j = i;
    long long group_pos = 0;
    while (j < n && scores[order[j]] == scores[order[i]]) group_pos += labels[order[j++]];
    const double mid_rank = (static_cast<double>(i + 1) + static_cast<double>(j)) / 2.0;
    pos_rank_sum += mid_rank * static_cast<double>(group_pos);
    pos += group_pos;
    i = j;
  }
  const double neg = static_cast<double>(n) - static_cast<double>(pos);
  const double u = pos_rank_sum - static_cast<double>(pos) * (static_cast<double>(pos) + 1.0) / 2.0;
  const double expected = u / (static_cast<double>(pos) * neg);
  EXPECT_NEAR(expected, ev::roc_auc(labels, scores), kTol);
}

TEST(Metrics, ReportJsonHasDocumentedShape) {
  const auto r = ev::classification_report({0, 0, 1, 1, 1}, {0.1, 0.6, 0.7, 0.4, 0.9}, 0.5);
  const json j = ev::report_to_json(r, 0.75);
  EXPECT_DOUBLE_EQ(0.75, j["auc"].get<double>());
  EXPECT_DOUBLE_EQ(0.6, j["accuracy"].get<double>());
  EXPECT_DOUBLE_EQ(0.5, j["threshold"].get<double>());
  EXPECT_EQ(json::parse("[[1, 1], [1, 2]]"), j["confusion_matrix"]);
  for (const char* key : {"precision", "recall", "f1", "support"}) {
    EXPECT_TRUE(j["classes"]["0"].contains(key)) << key;
    EXPECT_TRUE(j["classes"]["1"].contains(key)) << key;
    EXPECT_TRUE(j["macro_avg"].contains(key)) << key;
    EXPECT_TRUE(j["weighted_avg"].contains(key)) << key;
  }
  EXPECT_EQ(3, j["classes"]["1"]["support"].get<long long>());
  EXPECT_EQ(5, j["weighted_avg"]["support"].get<long long>());
  EXPECT_DOUBLE_EQ(2.0 / 3.0, j["classes"]["1"]["precision"].get<double>());
  EXPECT_TRUE(ev::report_to_json(r, std::nan("")).at("auc").is_null());
}

TEST(Metrics, ConfusionMatrixTableIsLabelled) {
  ev::Confusion c;
  c.tn = 120;
  c.fp = 7;
  c.fn = 12;
  c.tp = 1234567;
  const std::string t = ev::format_confusion_matrix(c);
  EXPECT_NE(t.find("pred 0"), std::string::npos) << t;
  EXPECT_NE(t.find("pred 1"), std::string::npos) << t;
  EXPECT_NE(t.find("true 0"), std::string::npos) << t;
  EXPECT_NE(t.find("true 1"), std::string::npos) << t;
  EXPECT_NE(t.find("1234567"), std::string::npos) << t;
  // Row "true 0" lists tn before fp.
  const auto row0 = t.substr(t.find("true 0"));
  EXPECT_LT(row0.find("120"), row0.find("7\n"));
}

}  // namespace
