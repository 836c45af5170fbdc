// Whole slides without a network: writing and reading pyramidal TIFFs through OpenSlide,
// choosing the level, finding tissue, the tile grid, smoothing and the GeoJSON regions.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "histoscan/cohort/cohort.h"
#include "histoscan/cohort/lesions.h"
#include "histoscan/slide/scan_map.h"
#include "histoscan/slide/scan_plan.h"
#include "histoscan/slide/slide.h"
#include "histoscan/slide/synth_slide.h"
#include "histoscan/util/error.h"
#include "test_util.h"

using namespace histoscan;
using namespace histoscan::test;

namespace {

double mean_saturation(const cv::Mat& rgb) {
  cv::Mat hsv;
  cv::cvtColor(rgb, hsv, cv::COLOR_RGB2HSV);
  return cv::mean(hsv)[1];
}

// Signed area (shoelace) of a closed ring of [x, y] positions.
double ring_area(const nlohmann::json& ring) {
  double a = 0;
  for (std::size_t i = 0; i + 1 < ring.size(); ++i)
    a += ring[i][0].get<double>() * ring[i + 1][1].get<double>() - ring[i + 1][0].get<double>() * ring[i][1].get<double>();
  return a / 2;
}

}  // namespace

TEST(Slide, TestSlideOpensInOpenSlideWithItsPyramidAndResolution) {
  TempDir dir;
  slide::SynthSlideSpec spec;  // 24 x 16 synthetic patches at 0.486 um/px
  auto truth = slide::write_synth_slide(dir / "s.tif", nullptr, spec);
  auto s = slide::Slide::open(dir / "s.tif");
  EXPECT_EQ(s.vendor(), "generic-tiff");
  ASSERT_GE(s.levels().size(), 3u);
  EXPECT_EQ(s.levels()[0].width, truth["width"].get<std::int64_t>());
  EXPECT_EQ(s.levels()[0].width, 24 * 192 + 4 * 192);  // the mosaic plus two patches of glass each side
  EXPECT_DOUBLE_EQ(s.levels()[1].downsample, 2.0);
  EXPECT_NEAR(s.mpp(), 0.486, 1e-4);

  // Glass reads near-white and unsaturated; a tumour patch reads as stained tissue, at level 0 and 1 alike.
  auto t = truth["tumour"];
  std::int64_t tx = t[0].get<std::int64_t>(), ty = t[1].get<std::int64_t>();
  cv::Mat glass = s.read(0, 10, 10, 64, 64);
  EXPECT_GT(cv::mean(glass)[0], 230);
  EXPECT_LT(mean_saturation(glass), 10);
  EXPECT_GT(mean_saturation(s.read(0, tx + 40, ty + 40, 100, 100)), 40);
  EXPECT_GT(mean_saturation(s.read(1, tx + 40, ty + 40, 50, 50)), 40);
  // Outside the slide is white, not an error.
  EXPECT_GT(cv::mean(s.read(0, -500, -500, 32, 32))[0], 254);

  double scale = 0;
  cv::Mat thumb = s.thumbnail(512, &scale);
  EXPECT_EQ(std::max(thumb.cols, thumb.rows), 512);
  EXPECT_NEAR(scale, 512.0 / double(s.levels()[0].width), 1e-3);
}

TEST(Slide, PlanReadsTheLevelMatchingTheNetworksResolution) {
  TempDir dir;
  slide::SynthSlideSpec spec;
  spec.cols = spec.rows = 8;
  spec.tumour = cv::Rect(2, 2, 3, 3);
  slide::write_synth_slide(dir / "s.tif", nullptr, spec);
  auto s = slide::Slide::open(dir / "s.tif");
  auto plan = slide::plan_read(s, 0.972);  // 0.486 um/px slide: level 1 is exactly right
  EXPECT_EQ(plan.level, 1);
  EXPECT_EQ(plan.read_scale, 1.0);
  EXPECT_NEAR(plan.input_to_level0, 2.0, 1e-3);
  EXPECT_EQ(plan.mpp_source, "slide");
  plan = slide::plan_read(s, 1.5);  // between levels: the finer one, shrunk
  EXPECT_EQ(plan.level, 1);
  EXPECT_NEAR(plan.read_scale, 1.5 / 0.972, 1e-3);
  plan = slide::plan_read(s, 0.972, 0);  // forced: level 0, shrunk twice
  EXPECT_EQ(plan.level, 0);
  EXPECT_NEAR(plan.read_scale, 2.0, 1e-3);
  plan = slide::plan_read(s, 0.972, -1, 0.243);  // --slide-mpp replaces the file's
  EXPECT_EQ(plan.mpp_source, "--slide-mpp");
  EXPECT_EQ(plan.level, 2);
  try {
    slide::plan_read(s, 0.972, 9);
    FAIL() << "level 9 accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("--level 9: "), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("has levels 0 to"), std::string::npos) << e.what();
  }
}

TEST(Slide, PlainImagesAreOneLevelSlidesWithoutResolution) {
  TempDir dir;
  cv::Mat img(300, 400, CV_8UC3, cv::Scalar(200, 100, 150));
  cv::imwrite((dir / "plain.png").string(), img);
  auto s = slide::Slide::open(dir / "plain.png");
  EXPECT_EQ(s.vendor(), "image");
  ASSERT_EQ(s.levels().size(), 1u);
  EXPECT_EQ(s.levels()[0].width, 400);
  EXPECT_EQ(s.mpp(), 0);
  EXPECT_EQ(slide::plan_read(s, 0.972).mpp_source, "assumed");
  cv::Mat px = s.read(0, 390, 0, 20, 1);                        // half inside, half outside
  EXPECT_EQ(px.at<cv::Vec3b>(0, 0), cv::Vec3b(150, 100, 200));  // RGB
  EXPECT_EQ(px.at<cv::Vec3b>(0, 15), cv::Vec3b(255, 255, 255));
}

TEST(Slide, FilesThatAreNotSlidesGetOneLineNamingThem) {
  TempDir dir;
  write_text(dir / "notes.svs", "this is not a slide");
  auto message = [](const fs::path& p) {
    try {
      slide::Slide::open(p);
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message(dir / "notes.svs").find("notes.svs: not a slide or image"), std::string::npos);
  EXPECT_NE(message(dir / "missing.svs").find("missing.svs: no such slide"), std::string::npos);
  EXPECT_NE(message(dir.path()).find("is a folder"), std::string::npos);
  // A slide cut short: OpenSlide or the image reader refuses it, with the file's name.
  slide::SynthSlideSpec spec;
  spec.cols = spec.rows = 6;
  spec.tumour = cv::Rect(1, 1, 2, 2);
  slide::write_synth_slide(dir / "whole.tif", nullptr, spec);
  auto size = fs::file_size(dir / "whole.tif");
  fs::copy_file(dir / "whole.tif", dir / "cut.tif");
  fs::resize_file(dir / "cut.tif", size / 3);
  std::string cut = message(dir / "cut.tif");
  EXPECT_NE(cut.find("cut.tif"), std::string::npos) << cut;
}

TEST(Slide, TissueIsFoundOnStainedAreasAndNotOnGlass) {
  cv::Mat thumb(100, 200, CV_8UC3, cv::Scalar(242, 242, 242));
  EXPECT_EQ(slide::find_tissue(thumb).pixels, 0u) << "blank glass has no tissue";
  cv::rectangle(thumb, cv::Rect(50, 20, 60, 40), cv::Scalar(200, 120, 190), cv::FILLED);  // pink H&E
  auto t = slide::find_tissue(thumb);
  EXPECT_NEAR(double(t.pixels), 60.0 * 40.0, 60.0 * 40.0 * 0.1);
  EXPECT_EQ(t.mask.at<std::uint8_t>(40, 80), 255);
  EXPECT_EQ(t.mask.at<std::uint8_t>(5, 5), 0);
}

TEST(Slide, GridCoversTheSlideAndTissueFractionsFollowTheMask) {
  // 1000 x 600 level-0 pixels at 2 level-0 pixels per input pixel: 500 x 300 input pixels.
  auto g = slide::make_grid(1000, 600, 2.0, 32);
  EXPECT_EQ(g.nx, (500 - 96) / 32 + 1);
  EXPECT_EQ(g.ny, (300 - 96) / 32 + 1);
  EXPECT_EQ(g.x0(3), 3 * 32 * 2);
  EXPECT_EQ(slide::make_grid(100, 100, 2.0, 32).nx, 0) << "a slide smaller than one tile has none";
  slide::TissueMask tissue;
  tissue.mask = cv::Mat(60, 100, CV_8U, cv::Scalar(0));  // thumbnail: 0.1 thumbnail px per level-0 px
  tissue.mask(cv::Rect(0, 0, 50, 60)).setTo(255);        // left half is tissue
  auto f = slide::tissue_fractions(g, tissue, 0.1);
  EXPECT_FLOAT_EQ(f[0], 1.f);
  EXPECT_FLOAT_EQ(f[std::size_t(g.nx) - 1], 0.f);
}

TEST(Slide, SmoothingAveragesScoredNeighboursOnly) {
  auto g = slide::make_grid(96 + 4 * 32, 96 + 4 * 32, 1.0, 32);  // 5 x 5 tiles
  ASSERT_EQ(g.nx, 5);
  g.probability[2 * 5 + 2] = 1.f;  // one isolated alarm
  g.probability[2 * 5 + 3] = 0.f;
  auto s = slide::smooth_probabilities(g, 1);
  EXPECT_FLOAT_EQ(s[2 * 5 + 2], 0.5f);  // two scored cells in its window
  EXPECT_TRUE(std::isnan(s[0])) << "unscored cells stay unscored";
  EXPECT_EQ(slide::smooth_probabilities(g, 0)[2 * 5 + 2], 1.f);
}

TEST(Slide, RegionsBecomeClosedGeoJsonPolygonsInLevel0Coordinates) {
  auto g = slide::make_grid((96 + 19 * 32) * 2, (96 + 19 * 32) * 2, 2.0, 32);  // 20 x 20 tiles, 2 level-0 px per input px
  ASSERT_EQ(g.nx, 20);
  for (int j = 0; j < g.ny; ++j)
    for (int i = 0; i < g.nx; ++i) g.probability[std::size_t(j) * g.nx + i] = 0.1f;
  for (int j = 4; j < 12; ++j)  // an 8 x 8 block with a 2 x 2 hole
    for (int i = 4; i < 12; ++i) g.probability[std::size_t(j) * g.nx + i] = (i >= 7 && i < 9 && j >= 7 && j < 9) ? 0.2f : 0.9f;
  g.probability[std::size_t(16) * g.nx + 16] = 0.8f;  // a single cell elsewhere
  auto geo = slide::tumour_geojson(g, 0.5, g.cell_area_mm2());
  EXPECT_EQ(geo["type"], "FeatureCollection");
  ASSERT_EQ(geo["features"].size(), 2u);
  const auto& block = geo["features"][0];
  EXPECT_EQ(block["type"], "Feature");
  EXPECT_EQ(block["geometry"]["type"], "Polygon");
  EXPECT_EQ(block["properties"]["cells"], 60);
  EXPECT_NEAR(block["properties"]["max_probability"].get<double>(), 0.9, 1e-6);
  const auto& rings = block["geometry"]["coordinates"];
  ASSERT_EQ(rings.size(), 2u) << "outer ring and the hole";
  for (const auto& ring : rings) {
    ASSERT_GE(ring.size(), 4u);
    EXPECT_EQ(ring.front(), ring.back()) << "rings are closed";
  }
  EXPECT_GT(ring_area(rings[0]), 0) << "exterior counter-clockwise";
  EXPECT_LT(ring_area(rings[1]), 0) << "hole clockwise";
  // Cells 4..11 cover input pixels 32 + 4*32 .. 32 + 12*32 (centre squares), times 2 in level 0.
  double lo = 1e9, hi = 0;
  for (const auto& p : rings[0]) {
    lo = std::min(lo, p[0].get<double>());
    hi = std::max(hi, p[0].get<double>());
  }
  EXPECT_NEAR(lo, (32 + 4 * 32) * 2.0, 16);
  EXPECT_NEAR(hi, (32 + 12 * 32) * 2.0, 16);
  EXPECT_GT(std::abs(ring_area(geo["features"][1]["geometry"]["coordinates"][0])), 0) << "a single cell still has an area";
}

TEST(Slide, LargeSlidesAreWrittenTileByTile) {
  // 20,000 x 12,000 pixels of glass around a small mosaic: the pyramid writer never holds a level.
  TempDir dir;
  slide::SynthSlideSpec spec;
  spec.cols = spec.rows = 6;
  spec.tumour = cv::Rect(2, 2, 2, 2);
  spec.width = 20000;
  spec.height = 12000;
  slide::write_synth_slide(dir / "big.tif", nullptr, spec);
  auto s = slide::Slide::open(dir / "big.tif");
  EXPECT_EQ(s.levels()[0].width, 20000);
  EXPECT_EQ(s.levels()[0].height, 12000);
  EXPECT_GE(s.levels().size(), 5u);
  double scale = 0;
  auto thumb = s.thumbnail(1024, &scale);
  auto tissue = slide::find_tissue(thumb);
  EXPECT_GT(tissue.pixels, 0u);
  // The tissue sits in the middle of the canvas.
  cv::Rect box = cv::boundingRect(tissue.mask);
  EXPECT_NEAR(box.x + box.width / 2.0, thumb.cols / 2.0, 5);
}

// A mostly-tissue thumbnail: pale tissue (saturation about 35) over most of it, dense tissue in
// a corner, a thin margin of glass. Otsu's threshold falls between pale and dense and dropped
// the pale part; the threshold from the glass keeps it.
TEST(Slide, TissueMaskKeepsPaleTissueOnAMostlyTissueSlide) {
  cv::Mat thumb(200, 300, CV_8UC3, cv::Scalar(243, 243, 245));         // glass
  thumb(cv::Rect(10, 10, 280, 180)).setTo(cv::Scalar(236, 214, 226));  // pale pink: saturation about 24
  thumb(cv::Rect(10, 10, 60, 60)).setTo(cv::Scalar(150, 60, 140));     // dense: about 150
  auto t = slide::find_tissue(thumb);
  EXPECT_LE(t.background, 5);
  EXPECT_EQ(t.threshold, 20);
  EXPECT_EQ(t.mask.at<std::uint8_t>(150, 200), 255) << "pale tissue is tissue";
  EXPECT_EQ(t.mask.at<std::uint8_t>(3, 3), 0) << "glass is not";
  EXPECT_NEAR(double(t.pixels), 280.0 * 180.0, 280.0 * 180.0 * 0.03);
  // A tinted glass (saturation about 30) moves the threshold up with it.
  cv::Mat tinted(200, 300, CV_8UC3, cv::Scalar(215, 235, 245));
  tinted(cv::Rect(100, 50, 100, 100)).setTo(cv::Scalar(200, 120, 190));
  auto u = slide::find_tissue(tinted);
  EXPECT_GT(u.threshold, u.background);
  EXPECT_EQ(u.mask.at<std::uint8_t>(10, 10), 0) << "tinted glass is not tissue";
  EXPECT_EQ(u.mask.at<std::uint8_t>(100, 150), 255);
  // --tissue-threshold sets it.
  auto fixed = slide::find_tissue(thumb, 20, 100);
  EXPECT_EQ(fixed.threshold, 100);
  EXPECT_EQ(fixed.rule, "--tissue-threshold");
  EXPECT_EQ(fixed.mask.at<std::uint8_t>(150, 200), 0);
  EXPECT_EQ(fixed.mask.at<std::uint8_t>(40, 40), 255);
}

namespace {

// A cohort of `n` test slides s0..s(n-1) in dir/in, and a manifest naming them with labels.
std::vector<std::string> write_cohort_inputs(const fs::path& dir, int n) {
  fs::create_directories(dir / "in");
  slide::SynthSlideSpec spec;
  spec.cols = spec.rows = 4;
  spec.tumour = cv::Rect(1, 1, 2, 2);
  std::string manifest = "slide,label\n";
  for (int i = 0; i < n; ++i) {
    spec.seed = static_cast<std::uint64_t>(i) + 1;
    slide::write_synth_slide(dir / "in" / ("s" + std::to_string(i) + ".tif"), nullptr, spec);
    manifest += "s" + std::to_string(i) + ".tif," + (i % 2 ? "tumour" : "normal") + "\n";
  }
  write_text(dir / "in/manifest.csv", manifest);
  return {(dir / "in/manifest.csv").string()};
}

// A scan without a network: the plan stage for real, each tile's probability from its
// position, and the real outputs. Slides named in `fail` throw.
struct FakeScan {
  std::set<std::string> fail;
  int calls = 0;
  nlohmann::json operator()(const cohort::SlideEntry& s, const fs::path& dir) {
    ++calls;
    if (fail.count(s.name)) throw InputError(s.path.string() + ": cannot read this slide");
    slide::ScanOptions o;
    o.require_tissue = o.require_mpp = true;
    auto plan = slide::plan_scan(s.path, o);
    for (const auto& block : plan.blocks)
      for (auto c : block) plan.grid.probability[c] = s.label == 1 ? 0.9f : 0.1f;
    return slide::write_scan_outputs(dir, plan, o, plan.tiles, 0.1);
  }
};

}  // namespace

TEST(Cohort, ManifestsFoldersAndFilesBecomeSlidesWithLabels) {
  TempDir dir;
  write_cohort_inputs(dir.path(), 2);
  write_text(dir / "in/m2.csv", "Slide,label,mpp\ns0.tif,0,0.5\n");  // header names are matched exactly
  auto slides = cohort::collect_slides({(dir / "in/manifest.csv").string()});
  ASSERT_EQ(slides.size(), 2u);
  EXPECT_EQ(slides[0].name, "s0");
  EXPECT_EQ(slides[0].label, 0);
  EXPECT_EQ(slides[1].label, 1);
  EXPECT_EQ(slides[1].path, dir / "in/s1.tif") << "paths are relative to the manifest's folder";
  auto folder = cohort::collect_slides({(dir / "in").string()});
  ASSERT_EQ(folder.size(), 2u) << "the folder's slides, not its CSV";
  EXPECT_EQ(folder[1].label, -1);
  EXPECT_TRUE(cohort::is_single_slide({(dir / "in/s0.tif").string()}));
  EXPECT_FALSE(cohort::is_single_slide({(dir / "in").string()}));
  EXPECT_FALSE(cohort::is_single_slide({(dir / "in/manifest.csv").string()}));
  EXPECT_EQ(cohort::parse_label("Tumor"), 1);
  EXPECT_EQ(cohort::parse_label("NORMAL"), 0);
  EXPECT_EQ(cohort::parse_label(""), -1);
  EXPECT_FALSE(cohort::parse_label("2").has_value());
}

TEST(Cohort, BadManifestsNameTheirLine) {
  TempDir dir;
  write_cohort_inputs(dir.path(), 2);
  auto error = [&](const std::string& text) {
    write_text(dir / "in/bad.csv", text);
    return error_of([&] { cohort::collect_slides({(dir / "in/bad.csv").string()}); });
  };
  EXPECT_NE(error("path,label\ns0.tif,0\n").find("no 'slide' column"), std::string::npos);
  EXPECT_NE(error("slide,label\ns0.tif,0\ns1.tif,maybe\n").find("bad.csv line 3: label 'maybe'"), std::string::npos);
  EXPECT_NE(error("slide,label\ns0.tif,0\ns0.tif,1\n").find("bad.csv line 3: slide"), std::string::npos);
  EXPECT_NE(error("slide,label\ns0.tif,0\ns0.tif,1\n").find("named twice"), std::string::npos);
  EXPECT_NE(error("slide\nmissing.svs\n").find("bad.csv line 2: slide missing.svs does not exist"), std::string::npos);
  EXPECT_NE(error("slide,mpp\ns0.tif,-1\n").find("line 2: mpp '-1'"), std::string::npos);
  EXPECT_NE(error("slide\n").find("no slides"), std::string::npos);
  fs::create_directories(dir / "other");
  fs::copy_file(dir / "in/s0.tif", dir / "other/s0.tif");
  EXPECT_NE(error_of([&] {
              cohort::collect_slides({(dir / "in/s0.tif").string(), (dir / "other/s0.tif").string()});
            }).find("have the same name 's0'"),
            std::string::npos);
}

TEST(Cohort, FailuresAreRowsResumeSkipsDoneSlidesAndTheTableHasSlideMetrics) {
  TempDir dir;
  auto inputs = write_cohort_inputs(dir.path(), 4);
  auto slides = cohort::collect_slides(inputs);
  const fs::path out = dir / "out";
  nlohmann::json settings = {{"stride", 32}};
  cohort::prepare_cohort_dir(out, settings, false, false);
  FakeScan scan;
  scan.fail = {"s2"};
  std::size_t i = 0;
  auto t = cohort::scan_slides(
      out, slides, std::ref(scan), [&] { return i++; }, false);
  EXPECT_EQ(t.scanned, 3u);
  EXPECT_EQ(t.failed, 1u);
  auto o = cohort::write_cohort_outputs(out, slides, 0.5);
  EXPECT_EQ(o.ok, 3u);
  EXPECT_EQ(o.failed, 1u);
  EXPECT_EQ(o.tumour, 2u);
  EXPECT_TRUE(o.metrics);
  auto rows = lines_of(read_text(out / "cohort.csv"));
  ASSERT_EQ(rows.size(), 5u);
  EXPECT_EQ(rows[0], "slide,status,call,top_k_mean,max_probability,tumour_mm2,tissue_mm2,tiles_scored,seconds,label");
  EXPECT_EQ(rows[1].substr(0, 22), "s0,ok,no tumour,0.1000");
  EXPECT_EQ(rows[2].substr(0, 19), "s1,ok,tumour,0.9000");
  EXPECT_EQ(rows[3], "s2,failed,,,,,,,,0");
  auto failures = lines_of(read_text(out / "failures.csv"));
  ASSERT_EQ(failures.size(), 2u);
  EXPECT_NE(failures[1].find("s2,"), std::string::npos);
  EXPECT_NE(failures[1].find("cannot read this slide"), std::string::npos);
  for (const auto& f : slide::scan_output_files()) {
    EXPECT_TRUE(fs::exists(out / "slides/s0" / f)) << f;
    EXPECT_FALSE(fs::exists(out / "slides/s2" / f)) << "a failed slide keeps no outputs: " << f;
  }
  auto m = nlohmann::json::parse(read_text(out / "metrics/metrics.json"));
  EXPECT_EQ(m["n"], 3);
  EXPECT_EQ(m["auc"], 1.0);
  EXPECT_TRUE(fs::exists(out / "metrics/roc.png"));
  std::string html = read_text(out / "cohort.html");
  EXPECT_LT(html.find(">s1<"), html.find(">s0<")) << "most likely tumour first";
  EXPECT_NE(html.find("id=\"failures\""), std::string::npos);

  // A re-run scans only what is not done: the failed slide, now readable.
  const auto before = csv_without_column(out / "cohort.csv", 8);
  cohort::prepare_cohort_dir(out, settings, false, false);
  scan.fail.clear();
  scan.calls = 0;
  i = 0;
  t = cohort::scan_slides(
      out, slides, std::ref(scan), [&] { return i++; }, false);
  EXPECT_EQ(scan.calls, 1);
  EXPECT_EQ(t.skipped, 3u);
  o = cohort::write_cohort_outputs(out, slides, 0.5);
  EXPECT_EQ(o.failed, 0u);
  EXPECT_EQ(lines_of(read_text(out / "failures.csv")).size(), 1u);
  auto after = csv_without_column(out / "cohort.csv", 8);
  EXPECT_EQ(after[1], before[1]);
  EXPECT_EQ(after[3].substr(0, 6), "s2,ok,");
  // --rescan scans them all; other settings without it are refused.
  i = 0;
  scan.calls = 0;
  cohort::scan_slides(
      out, slides, std::ref(scan), [&] { return i++; }, true);
  EXPECT_EQ(scan.calls, 4);
  std::string refused = error_of([&] { cohort::prepare_cohort_dir(out, {{"stride", 64}}, false, false); });
  EXPECT_NE(refused.find("other settings (stride was 32, now 64)"), std::string::npos) << refused;
  EXPECT_NO_THROW(cohort::prepare_cohort_dir(out, {{"stride", 64}}, true, false));
  // A folder that is not a cohort is not written into.
  write_text(dir / "notes/a.txt", "mine");
  EXPECT_NE(error_of([&] { cohort::prepare_cohort_dir(dir / "notes", settings, false, false); }).find("--out"),
            std::string::npos);
}

TEST(Cohort, ReportOpensInChromiumWithItsSections) {
  TempDir dir;
  auto slides = cohort::collect_slides(write_cohort_inputs(dir.path(), 2));
  cohort::prepare_cohort_dir(dir / "out", {}, false, false);
  FakeScan scan;
  std::size_t i = 0;
  cohort::scan_slides(
      dir / "out", slides, std::ref(scan), [&] { return i++; }, false);
  cohort::write_cohort_outputs(dir / "out", slides, 0.5);
  const std::string command = "/usr/bin/python3 " + std::string(HISTOSCAN_SOURCE_DIR) + "/tests/report/check_report.py '" +
                              (dir / "out/cohort.html").string() + "' '" +
                              (fs::current_path() / "cohort_screenshot.png").string() + "' --sections summary,metrics,roc,slides";
  int status = std::system(command.c_str());
  ASSERT_TRUE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 77) GTEST_SKIP() << "no Chromium installed";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "cohort.html failed in Chromium";
}

namespace {

// An ASAP XML file (as CAMELYON16 ships) with one polygon per rectangle [x, y, w, h] of `groups`.
std::string asap_xml(const std::vector<std::pair<std::string, std::array<double, 4>>>& groups) {
  std::string x = "<?xml version=\"1.0\"?>\n<ASAP_Annotations>\n\t<Annotations>\n";
  int n = 0;
  for (const auto& [group, r] : groups) {
    x += "\t\t<Annotation Name=\"Annotation " + std::to_string(n++) + "\" Type=\"Polygon\" PartOfGroup=\"" + group +
         "\" Color=\"#F4FA58\">\n\t\t\t<Coordinates>\n";
    double pts[4][2] = {{r[0], r[1]}, {r[0] + r[2], r[1]}, {r[0] + r[2], r[1] + r[3]}, {r[0], r[1] + r[3]}};
    for (int k = 0; k < 4; ++k)
      x += "\t\t\t\t<Coordinate Order=\"" + std::to_string(k) + "\" X=\"" + std::to_string(pts[k][0]) + "\" Y=\"" +
           std::to_string(pts[k][1]) + "\" />\n";
    x += "\t\t\t</Coordinates>\n\t\t</Annotation>\n";
  }
  return x + "\t</Annotations>\n\t<AnnotationGroups />\n</ASAP_Annotations>\n";
}

std::string geojson_rect(const std::array<double, 4>& r, const std::string& cls) {
  nlohmann::json ring =
      nlohmann::json::array({{r[0], r[1]}, {r[0] + r[2], r[1]}, {r[0] + r[2], r[1] + r[3]}, {r[0], r[1] + r[3]}, {r[0], r[1]}});
  nlohmann::json f = {
      {"type", "Feature"},
      {"geometry", {{"type", "Polygon"}, {"coordinates", {ring}}}},
      {"properties", {{"objectType", "annotation"}, {"classification", {{"name", cls}, {"color", {200, 0, 0}}}}}}};
  return nlohmann::json{{"type", "FeatureCollection"}, {"features", {f}}}.dump();
}

}  // namespace

TEST(Lesions, AsapXmlAndQuPathGeoJsonReadAsTumourAndExclusionRegions) {
  auto a = cohort::parse_annotations(asap_xml({{"_0", {10, 10, 100, 50}}, {"_1", {300, 300, 20, 20}}, {"_2", {20, 20, 10, 10}}}),
                                     "a.xml");
  ASSERT_EQ(a.tumour.size(), 2u);
  ASSERT_EQ(a.exclusion.size(), 1u);
  EXPECT_EQ(a.tumour[0].rings[0].size(), 4u);
  EXPECT_DOUBLE_EQ(a.tumour[0].rings[0][2].x, 110);
  auto g = cohort::parse_annotations(geojson_rect({0, 0, 50, 50}, "Tumor"), "a.geojson");
  EXPECT_EQ(g.tumour.size(), 1u);
  EXPECT_EQ(cohort::parse_annotations(geojson_rect({0, 0, 50, 50}, "Stroma"), "b.geojson").ignored, 1u)
      << "other classes are left out";
  EXPECT_EQ(cohort::parse_annotations(geojson_rect({0, 0, 50, 50}, "Exclusion"), "c.geojson").exclusion.size(), 1u);
  EXPECT_EQ(cohort::classify_annotation("Metastases"), cohort::AnnotationClass::tumour);
  // What does not parse is refused with the file's name, never a crash.
  auto message = [](const std::string& text) { return error_of([&] { cohort::parse_annotations(text, "bad.xml"); }); };
  EXPECT_NE(message("<ASAP_Annotations><Annotations>").find("bad.xml: not ASAP XML"), std::string::npos);
  EXPECT_NE(message("<A><Annotation><Coordinates><Coordinate X=\"1,5\" Y=\"2\"/></Coordinates></Annotation></A>")
                .find("'1,5' is not a number"),
            std::string::npos);
  EXPECT_NE(message("tumour somewhere").find("neither ASAP XML nor GeoJSON"), std::string::npos);
  EXPECT_NE(message("{\"type\": \"Polygon\", \"coordinates\": [[[0, 0], [1]]]}").find("not [x, y]"), std::string::npos);
  EXPECT_NE(message("{\"features\": []}").find("without a type"), std::string::npos);
}

// The challenge's computeFROC on a worked example: slide A has lesions hit at 0.9 and 0.4 and a
// false positive at 0.5, normal slide B false positives at 0.7 and 0.2. Thresholds 0.4, 0.5,
// 0.7, 0.9 (not the smallest, 0.2) give (FP/slide, sensitivity) (1, 1), (1, .5), (.5, .5),
// (0, .5), then (0, 0); numpy.interp at 1/4 .. 8 gives .5, .5, 1, 1, 1, 1 (checked in numpy).
TEST(Lesions, FrocIsTheChallengesOnAWorkedExample) {
  cohort::LesionResult a, b;
  a.tp = {0.9, 0.4};
  a.fp = {0.5};
  a.lesions = 2;
  b.fp = {0.7, 0.2};
  auto f = cohort::compute_froc({a, b});
  EXPECT_EQ(f.fp_per_slide, (std::vector<double>{1, 1, 0.5, 0, 0}));
  EXPECT_EQ(f.sensitivity, (std::vector<double>{1, 0.5, 0.5, 0.5, 0}));
  EXPECT_EQ(f.at, (std::array<double, 6>{0.5, 0.5, 1, 1, 1, 1}));
  EXPECT_NEAR(f.score, 5.0 / 6.0, 1e-12);
  EXPECT_NE(error_of([&] { cohort::compute_froc({b}); }).find("no slide has a lesion"), std::string::npos);
  // Isolated tumour cells add a 0 to the challenge's probabilities: then 0.2 is no longer the
  // smallest, and its threshold joins the curve: (1.5, 1) first.
  a.itc = 1;
  auto g = cohort::compute_froc({a, b});
  EXPECT_EQ(g.fp_per_slide.front(), 1.5);
  EXPECT_EQ(g.sensitivity.front(), 1.0);
  EXPECT_EQ(g.fp_per_slide.size(), f.fp_per_slide.size() + 1);
}

TEST(Lesions, DetectionsHitLesionsAndDiceComparesTheCalledCells) {
  // 40 x 40 cells of 32 input px, 1 level-0 px per input px, slide 2.43 µm/px (a cell is 78 µm).
  auto g = slide::make_grid(96 + 39 * 32, 96 + 39 * 32, 1.0, 32);
  for (auto& p : g.probability) p = 0.005f;  // below detect_lesions' floor
  // Called tumour: cells 10..19 (a block), and one false alarm at cell (32, 32).
  for (int j = 10; j < 20; ++j)
    for (int i = 10; i < 20; ++i) g.probability[std::size_t(j) * g.nx + i] = (i == 15 && j == 15) ? 0.95f : 0.8f;
  g.probability[std::size_t(32) * g.nx + 32] = 0.7f;
  // Truth: the same block of cells (cell (i, j) is centred at 32 (i + 1.5) level-0 px), a second
  // lesion far away that the scan missed, and one smaller than isolated tumour cells.
  auto cell = [](int i) { return 32.0 + 32.0 * i; };
  std::string xml = asap_xml(
      {{"_0", {cell(10), cell(10), 320, 320}}, {"_0", {cell(2), cell(30), 320, 320}}, {"_0", {cell(30), cell(5), 40, 40}}});
  auto truth = cohort::parse_annotations(xml, "t.xml");
  auto r = cohort::evaluate_lesions(g, 2.43, &truth, 0.5);
  EXPECT_EQ(r.lesions, 2u);
  EXPECT_EQ(r.itc, 1u) << "40 x 40 px at 2.43 µm: 97 µm";
  ASSERT_EQ(r.tp.size(), 2u);
  EXPECT_FLOAT_EQ(static_cast<float>(*std::max_element(r.tp.begin(), r.tp.end())), 0.95f);
  EXPECT_EQ(*std::min_element(r.tp.begin(), r.tp.end()), 0.0) << "the missed lesion";
  EXPECT_EQ(r.fp, (std::vector<double>{static_cast<double>(0.7f)}))
      << "the false alarm only: more hits on a lesion are not false";
  // Dice: 100 cells called and true, 1 called only, the missed lesion's 100 true only.
  EXPECT_NEAR(r.dice, 200.0 / (101 + 200), 0.02);
  auto normal = cohort::evaluate_lesions(g, 2.43, nullptr, 0.5);
  EXPECT_EQ(normal.lesions, 0u);
  EXPECT_EQ(normal.fp.size(), cohort::detect_lesions(g).size()) << "on a normal slide every detection is a false positive";
  EXPECT_GT(normal.fp.size(), 2u);
}

TEST(Cohort, AnnotatedSlidesGetDiceAndTheCohortAFroc) {
  TempDir dir;
  auto inputs = write_cohort_inputs(dir.path(), 4);
  // Outlines of each tumour slide's true block: s1 in ASAP XML, s3 in GeoJSON; s0 and s2 are
  // labelled normal; a fifth slide's outlines do not parse.
  slide::SynthSlideSpec spec;
  spec.cols = spec.rows = 4;
  spec.tumour = cv::Rect(1, 1, 2, 2);
  auto truth = slide::write_synth_slide(dir / "in/s4.tif", nullptr, spec);
  auto t = truth["tumour"];
  std::array<double, 4> rect = {t[0].get<double>(), t[1].get<double>(), t[2].get<double>(), t[3].get<double>()};
  write_text(dir / "in/s1.xml", asap_xml({{"_0", rect}}));
  write_text(dir / "in/s3.geojson", geojson_rect(rect, "Tumor"));
  write_text(dir / "in/s4.xml", "<ASAP_Annotations><Annotation");
  write_text(dir / "in/manifest.csv",
             "slide,label,annotations\ns0.tif,0,\ns1.tif,1,s1.xml\ns2.tif,normal,\ns3.tif,1,s3.geojson\ns4.tif,1,s4.xml\n");
  auto slides = cohort::collect_slides(inputs);
  cohort::prepare_cohort_dir(dir / "out", {}, false, false);
  FakeScan scan;
  std::size_t i = 0;
  auto tally = cohort::scan_slides(
      dir / "out", slides, std::ref(scan), [&] { return i++; }, false);
  EXPECT_EQ(tally.failed, 1u);
  EXPECT_EQ(scan.calls, 4) << "annotations that do not parse fail the slide before its scan";
  auto o = cohort::write_cohort_outputs(dir / "out", slides, 0.5);
  EXPECT_NE(read_text(dir / "out/failures.csv").find("s4.xml: not ASAP XML"), std::string::npos);
  auto rows = lines_of(read_text(dir / "out/cohort.csv"));
  ASSERT_EQ(rows.size(), 6u);
  EXPECT_EQ(rows[0].substr(rows[0].size() - 11), ",label,dice");
  // The stand-in calls every tissue tile of a tumour slide 0.9: Dice is the block's share of the called tissue.
  double dice1 = std::stod(rows[2].substr(rows[2].rfind(',') + 1)), dice3 = std::stod(rows[4].substr(rows[4].rfind(',') + 1));
  EXPECT_GT(dice1, 0.3);
  EXPECT_DOUBLE_EQ(dice1, dice3) << "the same outline read from XML and from GeoJSON";
  EXPECT_EQ(rows[1].back(), ',') << "no Dice without outlines";
  auto lesions = nlohmann::json::parse(read_text(dir / "out/lesions.json"));
  EXPECT_EQ(lesions["lesions"], 2);
  EXPECT_EQ(lesions["slides"], 4);
  EXPECT_DOUBLE_EQ(lesions["froc_score"].get<double>(), o.froc);
  // The stand-in's detections are 0.9 on the tumour slides (on the block and around it) and 0.1
  // on the normal ones: one threshold above the smallest, 0.9, where both lesions are found at
  // some rate of false positives a slide; the score follows the line from (0, 0) to there.
  const auto& curve = lesions["curve"];
  ASSERT_EQ(curve["sensitivity"], nlohmann::json({1.0, 0.0}));
  const double fp = curve["fp_per_slide"][0].get<double>();
  EXPECT_GT(fp, 0);
  double expected = 0;
  for (double rate : cohort::kFrocRates) expected += std::min(1.0, rate / fp) / 6;
  EXPECT_NEAR(o.froc, expected, 1e-12);
  EXPECT_TRUE(fs::exists(dir / "out/slides/s1/detections.csv"));
  EXPECT_NE(read_text(dir / "out/cohort.html").find("id=\"lesions\""), std::string::npos);
}
