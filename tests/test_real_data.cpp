// The real data of ../shared/data: PCam patches, Kaggle files and PCam HDF5 (label `data`).
#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "test_util.h"

using namespace histoscan::test;

// The core issue's acceptance check: a short run on real PCam patches, honest validation
// on other slides, AUC above 0.80.
TEST(RealData, PcamSubsetShortRunReachesAuc080OnOtherSlides) {
  fs::path pcam = shared_data("pcam-subset");
  if (pcam.empty()) GTEST_SKIP() << "no ../shared/data/pcam-subset";
  TempDir dir;
  auto r = run_cli("train " + quote(pcam / "train") + " --per-class 2000 --epochs 3 --valid " + quote(pcam / "valid") +
                     " --out " + quote(dir / "run") + " --no-progress");
  ASSERT_EQ(r.code, 0) << r.output;
  r = run_cli("evaluate " + quote(dir / "run/best.pt") + " " + quote(pcam / "valid") + " --target-sensitivity 0.95 --out " +
              quote(dir / "eval"));
  ASSERT_EQ(r.code, 0) << r.output;
  std::cout << r.output;
  auto m = nlohmann::json::parse(read_text(dir / "eval/metrics.json"));
  EXPECT_GT(m["auc"].get<double>(), 0.80);
  EXPECT_EQ(m["n"], 2907);
  EXPECT_GE(m["operating_point"]["sensitivity"].get<double>(), 0.95);

  // The evaluation issue's checks: scikit-learn agrees with every number, and the report
  // renders in Chromium without console errors (screenshot kept beside the test's output).
  std::string src = HISTOSCAN_SOURCE_DIR;
  int sk = std::system(("/usr/bin/python3 " + src + "/tests/interop/check_metrics_sklearn.py " + quote(dir / "eval/metrics.json") +
                        " " + quote(dir / "eval/predictions.csv") + " --min-sensitivity 0.95").c_str());
  EXPECT_EQ(sk, 0) << "metrics.json differs from scikit-learn";
  int shot = std::system(("/usr/bin/python3 " + src + "/tests/report/check_report.py " + quote(dir / "eval/report.html") + " " +
                          quote(fs::current_path() / "pcam_valid_report.png")).c_str());
  EXPECT_TRUE(WIFEXITED(shot) && (WEXITSTATUS(shot) == 0 || WEXITSTATUS(shot) == 77)) << "report.html failed in Chromium";
  for (const char* file : {"roc.png", "pr.png", "confusion.png", "reliability.png", "history.png"})
    EXPECT_TRUE(fs::exists(dir / "eval" / file)) << file;
}

TEST(RealData, PredictKaggleTestWritesTwentyNineSortedRows) {
  fs::path kaggle = shared_data("kaggle-sample");
  if (kaggle.empty()) GTEST_SKIP() << "no ../shared/data/kaggle-sample";
  TempDir dir;
  auto r = run_cli("train " + quote(kaggle) + " --epochs 1 --batch 8 --val-fraction 0.3 --out " + quote(dir / "run") + " --no-progress");
  ASSERT_EQ(r.code, 0) << r.output;
  r = run_cli("evaluate " + quote(dir / "run/best.pt") + " " + quote(kaggle) + " --out " + quote(dir / "eval"));
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(lines_of(read_text(dir / "eval/predictions.csv")).size(), 16u);
  r = run_cli("predict " + quote(dir / "run/best.pt") + " " + quote(kaggle / "test") + " --out " + quote(dir / "submission.csv"));
  ASSERT_EQ(r.code, 0) << r.output;
  auto rows = lines_of(read_text(dir / "submission.csv"));
  ASSERT_EQ(rows.size(), 30u);
  EXPECT_EQ(rows[0], "id,label");
  EXPECT_TRUE(std::is_sorted(rows.begin() + 1, rows.end()));
  for (const auto& entry : fs::directory_iterator(kaggle / "test")) {
    std::string id = entry.path().stem().string();
    EXPECT_TRUE(std::any_of(rows.begin(), rows.end(), [&](const std::string& row) { return row.rfind(id + ",", 0) == 0; })) << id;
  }
}

TEST(RealData, TrainAndEvaluateReadPcamHdf5AndPackRoundTrips) {
  fs::path x = shared_data("pcam-h5/camelyonpatch_level_2_split_valid_x.h5");
  if (x.empty()) GTEST_SKIP() << "no ../shared/data/pcam-h5";
  TempDir dir;
  auto r = run_cli("train " + quote(x) + " --epochs 1 --out " + quote(dir / "run") + " --no-progress");
  ASSERT_EQ(r.code, 0) << r.output;
  r = run_cli("pack " + quote(shared_data("kaggle-sample")) + " " + quote(dir / "kaggle.h5"));
  ASSERT_EQ(r.code, 0) << r.output;
  r = run_cli("evaluate " + quote(dir / "run/best.pt") + " " + quote(dir / "kaggle.h5") + " --out " + quote(dir / "eval"));
  ASSERT_EQ(r.code, 0) << r.output;
  auto m = nlohmann::json::parse(read_text(dir / "eval/metrics.json"));
  EXPECT_EQ(m["n"], 15);
  auto inspect = run_cli("inspect --json " + quote(dir / "kaggle.h5"));
  ASSERT_EQ(inspect.code, 0) << inspect.output;
  auto j = nlohmann::json::parse(inspect.output.substr(inspect.output.find('{')));
  EXPECT_EQ(j["classes"]["0"], 10);
  EXPECT_EQ(j["classes"]["1"], 5);
}
