// Plots (cairo PNGs that OpenCV decodes), history.csv reading, and the self-contained
// HTML report; the Chromium check runs when Debian's chromium is installed.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdlib>
#include <set>
#include <string>
#include <vector>

#include <opencv2/imgcodecs.hpp>

#include "histoscan/eval/html_report.h"
#include "histoscan/eval/plots.h"
#include "histoscan/util/error.h"
#include "test_util.h"

#ifndef HISTOSCAN_SOURCE_DIR
#error "HISTOSCAN_SOURCE_DIR must name the repository root"
#endif

namespace {

namespace ev = histoscan::eval;
namespace fs = std::filesystem;
using histoscan::InputError;
using histoscan::test::read_text;
using histoscan::test::TempDir;
using histoscan::test::write_text;

// A PNG of the expected size that is a drawing rather than a blank page.
void expect_drawn_png(const fs::path& path, int width, int height) {
  ASSERT_TRUE(fs::exists(path)) << path;
  cv::Mat image = cv::imread(path.string(), cv::IMREAD_COLOR);
  ASSERT_FALSE(image.empty()) << path << " does not decode";
  EXPECT_EQ(image.cols, width) << path;
  EXPECT_EQ(image.rows, height) << path;
  std::set<int> colours;
  long long ink = 0;
  for (int y = 0; y < image.rows; ++y)
    for (int x = 0; x < image.cols; ++x) {
      cv::Vec3b p = image.at<cv::Vec3b>(y, x);
      colours.insert(p[0] << 16 | p[1] << 8 | p[2]);
      if (p[0] < 250 || p[1] < 250 || p[2] < 250) ++ink;
    }
  EXPECT_GT(colours.size(), 100u) << path << " has too few colours to be a chart";
  EXPECT_GT(ink, image.total() / 50) << path << " is almost blank";
}

ev::Series curve(const std::string& name, double power) {
  ev::Series s{name, {}, {}};
  for (int i = 0; i <= 50; ++i) s.x.push_back(i / 50.0), s.y.push_back(std::pow(i / 50.0, power));
  return s;
}

std::vector<ev::HistoryRow> some_history() {
  std::vector<ev::HistoryRow> rows;
  for (int e = 1; e <= 12; ++e)
    rows.push_back({e, 0.3 + 0.4 * std::exp(-e / 3.0), 0.9 - 0.2 * std::exp(-e / 3.0), 0.35 + 0.4 * std::exp(-e / 4.0),
                    0.88 - 0.2 * std::exp(-e / 4.0), 0.95 - 0.1 * std::exp(-e / 3.0), e < 7 ? 1e-3 : 1e-4});
  return rows;
}

std::vector<std::uint8_t> gradient_patch() {
  std::vector<std::uint8_t> rgb(96 * 96 * 3);
  for (int y = 0; y < 96; ++y)
    for (int x = 0; x < 96; ++x) {
      std::uint8_t* p = &rgb[(y * 96 + x) * 3];
      p[0] = static_cast<std::uint8_t>(x * 2), p[1] = static_cast<std::uint8_t>(y * 2), p[2] = 200;
    }
  return rgb;
}

int count(const std::string& text, const std::string& what) {
  int n = 0;
  for (auto pos = text.find(what); pos != std::string::npos; pos = text.find(what, pos + 1)) ++n;
  return n;
}

TEST(Plots, EachChartIsADrawnPngOfItsSize) {
  TempDir dir;
  ev::plot_roc(dir / "roc.png", {curve("best.pt (AUC 0.912)", 0.2), curve("last.pt (AUC 0.870)", 0.35)},
               {{"best.pt at 0.50", 0.1, 0.63}, {"last.pt at 0.50", 0.2, 0.57}});
  ev::plot_pr(dir / "pr.png", {curve("best.pt", 0.1)}, {{"threshold 0.50", 0.8, 0.97}}, 0.4);
  ev::plot_confusion(dir / "confusion.png", {1200, 80, 95, 900}, 0.5);
  ev::plot_reliability(dir / "reliability.png", {0.05, 0.3, 0.55, 0.93}, {0.02, 0.25, 0.6, 0.97}, {500, 40, 60, 400}, 0.031, 10);
  ev::plot_history(dir / "history.png", some_history());
  for (const char* name : {"roc.png", "pr.png", "confusion.png", "reliability.png"})
    expect_drawn_png(dir / name, ev::kPlotWidth, ev::kPlotHeight);
  expect_drawn_png(dir / "history.png", ev::kHistoryWidth, ev::kHistoryHeight);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()), 5) << "a temporary file was left behind";
}

TEST(Plots, DegenerateInputsStillDraw) {
  TempDir dir;
  ev::plot_roc(dir / "roc.png", {}, {});
  ev::plot_confusion(dir / "confusion.png", {0, 0, 0, 0}, 0.5);
  ev::plot_reliability(dir / "reliability.png", {}, {}, {}, 0.0);
  // Every bin kept, empty ones NaN (analysis.h's Calibration).
  ev::plot_reliability(dir / "reliability_gaps.png", {0.04, NAN, 0.5, NAN, 0.93}, {0.01, NAN, 0.45, NAN, 0.95},
                       {700, 0, 25, 0, 650}, 0.02, 5);
  expect_drawn_png(dir / "reliability_gaps.png", ev::kPlotWidth, ev::kPlotHeight);
  ev::plot_roc(dir / "roc_nan.png", {{"one class", {NAN, NAN}, {0, 1}}}, {{"nan point", NAN, 0.5}});
  ev::plot_history(dir / "history.png", {{1, 0.6, 0.7, NAN, NAN, NAN, 1e-3}});
  expect_drawn_png(dir / "roc.png", ev::kPlotWidth, ev::kPlotHeight);
  expect_drawn_png(dir / "history.png", ev::kHistoryWidth, ev::kHistoryHeight);
  EXPECT_THROW(ev::plot_history(dir / "empty.png", {}), InputError);
  EXPECT_THROW(ev::plot_roc(dir / "bad.png", {{"x", {0, 1}, {0}}}, {}), std::invalid_argument);
}

TEST(Plots, UnwritableFolderIsAnInputErrorNamingTheFile) {
  TempDir dir;
  const fs::path target = dir / "missing" / "roc.png";
  try {
    ev::plot_roc(target, {curve("a", 0.3)}, {});
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(target.string()), std::string::npos) << e.what();
  }
}

TEST(Plots, PngBytesRoundTripThroughOpenCv) {
  std::vector<std::uint8_t> rgb = gradient_patch();
  std::vector<unsigned char> png = ev::png_bytes_rgb(rgb.data(), 96, 96);
  cv::Mat image = cv::imdecode(png, cv::IMREAD_COLOR);
  ASSERT_EQ(image.cols, 96);
  ASSERT_EQ(image.rows, 96);
  for (int y : {0, 17, 95})
    for (int x : {0, 40, 95}) {
      cv::Vec3b bgr = image.at<cv::Vec3b>(y, x);
      const std::uint8_t* p = &rgb[(y * 96 + x) * 3];
      EXPECT_EQ(bgr[2], p[0]);
      EXPECT_EQ(bgr[1], p[1]);
      EXPECT_EQ(bgr[0], p[2]);
    }
}

TEST(History, ReadsTrainerOutputWithOrWithoutSeconds) {
  TempDir dir;
  write_text(dir / "h.csv",
             "epoch,loss,accuracy,val_loss,val_accuracy,val_auc,lr,seconds\n"
             "1,0.650000,0.700000,0.600000,0.710000,0.800000,0.001,31.50\n"
             "2,0.500000,0.780000,0.550000,0.760000,nan,0.0005,30.10\r\n");
  auto rows = ev::read_history_csv(dir / "h.csv");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1].epoch, 2);
  EXPECT_DOUBLE_EQ(rows[0].loss, 0.65);
  EXPECT_DOUBLE_EQ(rows[0].val_accuracy, 0.71);
  EXPECT_TRUE(std::isnan(rows[1].val_auc));
  EXPECT_DOUBLE_EQ(rows[1].lr, 0.0005);

  write_text(dir / "h7.csv", "lr,epoch,loss,accuracy,val_loss,val_accuracy,val_auc\n1e-4,3,0.4,0.8,0.45,0.79,0.9\n");
  rows = ev::read_history_csv(dir / "h7.csv");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].epoch, 3);
  EXPECT_DOUBLE_EQ(rows[0].lr, 1e-4);
}

void expect_history_error(const fs::path& path, const std::vector<std::string>& fragments) {
  try {
    ev::read_history_csv(path);
    FAIL() << "no error for " << path;
  } catch (const InputError& e) {
    for (const auto& f : fragments) EXPECT_NE(std::string(e.what()).find(f), std::string::npos) << e.what();
  }
}

TEST(History, BadFilesNameTheFileAndLine) {
  TempDir dir;
  const std::string header = "epoch,loss,accuracy,val_loss,val_accuracy,val_auc,lr\n";
  write_text(dir / "word.csv", header + "1,0.5,0.8,0.5,0.8,0.9,0.001\n2,0.4,abc,0.5,0.8,0.9,0.001\n");
  expect_history_error(dir / "word.csv", {(dir / "word.csv").string(), "line 3", "accuracy", "abc"});
  write_text(dir / "epoch.csv", header + "1.5,0.5,0.8,0.5,0.8,0.9,0.001\n");
  expect_history_error(dir / "epoch.csv", {"line 2", "epoch"});
  write_text(dir / "lr.csv", header + "1,0.5,0.8,0.5,0.8,0.9,-1\n");
  expect_history_error(dir / "lr.csv", {"line 2", "lr"});
  write_text(dir / "column.csv", "epoch,loss,accuracy,val_loss,val_accuracy,lr\n1,0.5,0.8,0.5,0.8,0.001\n");
  expect_history_error(dir / "column.csv", {(dir / "column.csv").string(), "val_auc"});
  write_text(dir / "empty.csv", header);
  expect_history_error(dir / "empty.csv", {"no epochs"});
  write_text(dir / "short.csv", header + "1,0.5,0.8\n");
  expect_history_error(dir / "short.csv", {(dir / "short.csv").string(), "line 2"});
  expect_history_error(dir / "absent.csv", {(dir / "absent.csv").string()});
}

TEST(Report, Base64AndEscaping) {
  auto b64 = [](const std::string& s) { return ev::base64_encode({s.begin(), s.end()}); };
  EXPECT_EQ(b64(""), "");
  EXPECT_EQ(b64("f"), "Zg==");
  EXPECT_EQ(b64("fo"), "Zm8=");
  EXPECT_EQ(b64("foo"), "Zm9v");
  EXPECT_EQ(b64("foobar"), "Zm9vYmFy");
  EXPECT_EQ(ev::base64_encode({0xff, 0xfe, 0x00}), "//4A");
  EXPECT_EQ(ev::html_escape("<a href=\"x\">&'</a>"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;");
}

// A report with every section filled in, its plot drawn into `dir`.
ev::ReportInput sample_report(const fs::path& dir) {
  ev::plot_roc(dir / "roc.png", {curve("best.pt (AUC 0.912)", 0.2)}, {{"threshold 0.50", 0.1, 0.63}});
  ev::plot_confusion(dir / "confusion.png", {1200, 80, 95, 900}, 0.5);
  ev::ReportInput in;
  in.title = "histoscan evaluation";
  in.summary = {{"checkpoint", "runs/a/best.pt"}, {"data", "test & <holdout>"}, {"n", "2,275"}};
  in.metrics_table = {{"metric", "value", "95% CI low", "95% CI high"}, {"ROC AUC", "0.912", "0.900", "0.923"}};
  in.operating_table = {{"rule", "threshold", "sensitivity", "specificity"}, {"checkpoint", "0.500", "0.90", "0.94"}};
  in.plots = {{"ROC curve", dir / "roc.png"}, {"Confusion matrix", dir / "confusion.png"}};
  in.false_positives = {{"<script>alert(1)</script>", 0, 0.97, gradient_patch()}, {"fp2", 0, 0.91, gradient_patch()}};
  in.false_negatives = {{"fn1", 1, 0.04, gradient_patch()}};
  return in;
}

TEST(Report, SelfContainedPageWithEverySection) {
  TempDir dir;
  ev::write_html_report(dir / "report.html", sample_report(dir.path()));
  const std::string html = read_text(dir / "report.html");
  for (const char* id : {"summary", "metrics", "operating-point", "plots", "errors"})
    EXPECT_EQ(count(html, std::string("id=\"") + id + "\""), 1) << id;
  EXPECT_EQ(count(html, "src=\"data:image/png;base64,"), 2 + 3);
  EXPECT_EQ(count(html, "<img"), 2 + 3);
  const std::string roc = read_text(dir / "roc.png");
  EXPECT_NE(html.find(ev::base64_encode({roc.begin(), roc.end()})), std::string::npos) << "roc.png is not embedded as is";
  EXPECT_EQ(html.find("http://"), std::string::npos);
  EXPECT_EQ(html.find("https://"), std::string::npos);
  EXPECT_EQ(html.find("<script"), std::string::npos) << "a patch id reached the page unescaped";
  EXPECT_NE(html.find("&lt;script&gt;alert(1)&lt;/script&gt;"), std::string::npos);
  EXPECT_NE(html.find("test &amp; &lt;holdout&gt;"), std::string::npos);
  EXPECT_NE(html.find("p(tumour) = 0.970"), std::string::npos);
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
}

TEST(Report, MissingPlotOrBadPatchLeavesNoFile) {
  TempDir dir;
  ev::ReportInput in = sample_report(dir.path());
  in.plots.push_back({"gone", dir / "gone.png"});
  try {
    ev::write_html_report(dir / "report.html", in);
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("gone.png"), std::string::npos) << e.what();
  }
  in.plots.pop_back();
  in.false_negatives[0].rgb.resize(10);
  EXPECT_THROW(ev::write_html_report(dir / "report.html", in), std::invalid_argument);
  EXPECT_FALSE(fs::exists(dir / "report.html"));
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()), 2) << "temporary file left";
}

// Runs tests/report/check_report.py; its exit status (77: no Chromium installed).
int check_in_chromium(const fs::path& report, const fs::path& screenshot) {
  const std::string command = "/usr/bin/python3 " + std::string(HISTOSCAN_SOURCE_DIR) + "/tests/report/check_report.py '" +
                              report.string() + "' '" + screenshot.string() + "' --timeout 90";
  int status = std::system(command.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Output stays in the working folder (the test's build folder) for a person to look at.
TEST(Report, OpensInChromiumWithoutConsoleErrors) {
  if (!fs::exists("/usr/bin/python3")) GTEST_SKIP() << "no /usr/bin/python3";
  const fs::path out = fs::absolute("test_report_output");
  fs::create_directories(out);
  ev::write_html_report(out / "report.html", sample_report(out));
  int status = check_in_chromium(out / "report.html", out / "report_screenshot.png");
  if (status == 77) GTEST_SKIP() << "Chromium is not installed";
  EXPECT_EQ(status, 0);
  expect_drawn_png(out / "report_screenshot.png", 1280, cv::imread((out / "report_screenshot.png").string()).rows);

  // The checker must notice a page that does log an error.
  TempDir dir;
  write_text(dir / "bad.html",
             "<!DOCTYPE html><html><body><section id=\"summary\">x</section>"
             "<section id=\"metrics\">x</section><section id=\"operating-point\">x</section>"
             "<section id=\"plots\">x</section><section id=\"errors\">x</section>"
             "<script>console.error('deliberate')</script></body></html>");
  EXPECT_EQ(check_in_chromium(dir / "bad.html", dir / "bad.png"), 1);
}

}  // namespace
