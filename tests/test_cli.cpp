// The command line end to end on small synthetic data, and its answers to bad input.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include "cli_util.h"
#include "test_util.h"

using namespace histoscan::test;

namespace {

// The history without its last column (seconds), which differs between runs.
std::string history_without_time(const fs::path& csv) {
  std::string out;
  for (auto& line : lines_of(read_text(csv))) out += line.substr(0, line.rfind(',')) + "\n";
  return out;
}

void expect_user_error(const RunResult& r, const std::string& fragment) {
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("histoscan: error: "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(fragment), std::string::npos) << r.output;
}

// One small synthetic dataset and one trained run shared by the tests of this file.
class Cli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    auto r = run_cli("synth " + quote(*dir_ / "data") + " --train 160 --test 24 --seed 11");
    ASSERT_EQ(r.code, 0) << r.output;
    r = run_cli("train " + quote(*dir_ / "data") + " --out " + quote(*dir_ / "run") +
                " --epochs 2 --batch 32 --threads 2 --seed 5 --no-progress");
    ASSERT_EQ(r.code, 0) << r.output;
  }
  static void TearDownTestSuite() { delete dir_; }
  static TempDir* dir_;
};
TempDir* Cli::dir_ = nullptr;

}  // namespace

TEST_F(Cli, SynthWritesKaggleLayoutThatInspectReads) {
  auto r = run_cli("inspect --json " + quote(*dir_ / "data"));
  ASSERT_EQ(r.code, 0) << r.output;
  auto j = nlohmann::json::parse(r.output.substr(r.output.find('{')));
  EXPECT_EQ(j["kind"], "kaggle");
  EXPECT_EQ(j["images"], 160);
  EXPECT_EQ(j["classes"]["0"].get<int>() + j["classes"]["1"].get<int>(), 160);
  EXPECT_GT(j["classes"]["1"].get<int>(), 30);
  EXPECT_EQ(j["formats"]["96x96x3 8-bit"], 160);
  EXPECT_TRUE(j["unreadable"].empty());
  auto text = run_cli("inspect " + quote(*dir_ / "data"));
  EXPECT_NE(text.output.find("1 tumour |#"), std::string::npos) << text.output;
}

TEST_F(Cli, TrainWritesCheckpointsHistoryAndConfig) {
  fs::path run = *dir_ / "run";
  for (const char* f : {"best.pt", "last.pt", "history.csv", "config.json"}) EXPECT_TRUE(fs::exists(run / f)) << f;
  auto history = lines_of(read_text(run / "history.csv"));
  ASSERT_EQ(history.size(), 3u);
  EXPECT_EQ(history[0], "epoch,loss,accuracy,val_loss,val_accuracy,val_auc,lr,seconds");
  auto config = nlohmann::json::parse(read_text(run / "config.json"));
  EXPECT_EQ(config["lr"], 0.001);
  EXPECT_EQ(config["batch"], 32);
  EXPECT_EQ(config["train_patches"].get<int>() + config["valid_patches"].get<int>(), 160);
  EXPECT_NEAR(config["valid_patches"].get<int>(), 40, 1);  // a quarter of each class, rounded
  // How the run was made, as a shell takes it back; the checkpoint's report shows it.
  EXPECT_EQ(config["command"], "histoscan train " + (*dir_ / "data").string() + " --out " + run.string() +
                                   " --epochs 2 --batch 32 --threads 2 --seed 5 --no-progress");
}

TEST_F(Cli, EvaluateWritesMetricsAndPredictions) {
  fs::path out = *dir_ / "eval";
  auto r = run_cli("evaluate " + quote(*dir_ / "run/best.pt") + " " + quote(*dir_ / "data") + " --out " + quote(out));
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("weighted avg"), std::string::npos);
  EXPECT_NE(r.output.find("ROC AUC"), std::string::npos);
  auto m = nlohmann::json::parse(read_text(out / "metrics.json"));
  for (const char* key : {"auc", "accuracy", "threshold", "confusion_matrix", "classes", "intervals", "operating_point",
                          "calibration", "average_precision", "mcc", "brier", "log_loss"})
    EXPECT_TRUE(m.contains(key)) << key;
  EXPECT_LE(m["intervals"]["auc"]["low"].get<double>(), m["auc"].get<double>());
  EXPECT_GE(m["intervals"]["auc"]["high"].get<double>(), m["auc"].get<double>());
  for (const char* file : {"roc.png", "pr.png", "confusion.png", "reliability.png", "history.png", "report.html"})
    EXPECT_GT(fs::file_size(out / file), 1000u) << file;
  EXPECT_NE(read_text(out / "report.html").find("trained with"), std::string::npos);
  auto cm = m["confusion_matrix"];
  EXPECT_EQ(cm[0][0].get<int>() + cm[0][1].get<int>() + cm[1][0].get<int>() + cm[1][1].get<int>(), 160);
  auto rows = lines_of(read_text(out / "predictions.csv"));
  EXPECT_EQ(rows.size(), 161u);
  EXPECT_EQ(rows[0], "id,label,probability");
}

TEST_F(Cli, MetricsRecomputesTheSameNumbersFromPredictions) {
  fs::path out = *dir_ / "eval_m";
  ASSERT_EQ(
      run_cli("evaluate " + quote(*dir_ / "run/best.pt") + " " + quote(*dir_ / "data") + " --youden --out " + quote(out)).code,
      0);
  auto r = run_cli("metrics --json --youden " + quote(out / "predictions.csv"));
  ASSERT_EQ(r.code, 0) << r.output;
  auto again = nlohmann::json::parse(r.output.substr(r.output.find('{')));
  auto first = nlohmann::json::parse(read_text(out / "metrics.json"));
  for (const char* key : {"auc", "accuracy", "threshold", "mcc", "brier", "log_loss", "average_precision"})
    EXPECT_EQ(again[key], first[key]) << key;
  EXPECT_EQ(again["operating_point"]["rule"], "youden");
  write_text(*dir_ / "bad_preds.csv", "id,label,probability\na,1,0.3\nb,0,1.5\n");
  expect_user_error(run_cli("metrics " + quote(*dir_ / "bad_preds.csv")), "line 3");
}

TEST_F(Cli, SavedThresholdDrivesBinaryPredictions) {
  fs::path ckpt = *dir_ / "thr.pt";
  fs::copy_file(*dir_ / "run/best.pt", ckpt);
  auto r = run_cli("evaluate " + quote(ckpt) + " " + quote(*dir_ / "data") + " --target-sensitivity 0.9 --save-threshold --out " +
                   quote(*dir_ / "eval_thr"));
  ASSERT_EQ(r.code, 0) << r.output;
  auto m = nlohmann::json::parse(read_text(*dir_ / "eval_thr/metrics.json"));
  double threshold = m["operating_point"]["threshold"].get<double>();
  EXPECT_GE(m["operating_point"]["sensitivity"].get<double>(), 0.9);
  ASSERT_EQ(run_cli("predict " + quote(ckpt) + " " + quote(*dir_ / "data/test") + " --out " + quote(*dir_ / "p.csv")).code, 0);
  ASSERT_EQ(
      run_cli("predict --binary " + quote(ckpt) + " " + quote(*dir_ / "data/test") + " --out " + quote(*dir_ / "b.csv")).code, 0);
  auto probs = lines_of(read_text(*dir_ / "p.csv")), labels = lines_of(read_text(*dir_ / "b.csv"));
  ASSERT_EQ(probs.size(), labels.size());
  for (std::size_t i = 1; i < probs.size(); ++i) {
    double p = std::stod(probs[i].substr(probs[i].find(',') + 1));
    std::string label = labels[i].substr(labels[i].find(',') + 1);
    // p.csv rounds to 6 decimals; skip rows that close to the cut-off
    if (std::abs(p - threshold) > 1e-5) {
      EXPECT_EQ(label, p >= threshold ? "1" : "0") << probs[i];
    }
  }
}

TEST_F(Cli, SeveralCheckpointsAreComparedInOneTable) {
  fs::path out = *dir_ / "compare";
  auto r = run_cli("evaluate " + quote(*dir_ / "run/best.pt") + " " + quote(*dir_ / "run/last.pt") + " " + quote(*dir_ / "data") +
                   " --bootstrap 100 --out " + quote(out));
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("run-best"), std::string::npos) << r.output;
  auto c = nlohmann::json::parse(read_text(out / "comparison.json"));
  ASSERT_EQ(c["models"].size(), 2u);
  EXPECT_TRUE(fs::exists(out / "roc.png"));
  EXPECT_TRUE(fs::exists(out / "run-best/report.html"));
  EXPECT_TRUE(fs::exists(out / "run-last/metrics.json"));
}

TEST_F(Cli, ModelsListsEachNetworkWithItsSizeAndTheOptionsAsked) {
  auto all = run_cli("models");
  ASSERT_EQ(all.code, 0) << all.output;
  EXPECT_NE(all.output.find("seed-cnn  (786977 parameters, "), std::string::npos) << all.output;
  EXPECT_NE(all.output.find("resnet  (1227745 parameters, 0.1350 GFLOP per patch)"), std::string::npos) << all.output;
  // resnet's own crop is 64; the default recipe trains it on the whole 96 x 96, and says so.
  EXPECT_NE(all.output.find("--recipe default trains resnet with crop=96\n"), std::string::npos) << all.output;
  EXPECT_NE(all.output.find("--recipe seed trains seed-cnn\n"), std::string::npos) << all.output;
  // A wider crop costs more arithmetic with the same parameters, and the line says which sizes these are.
  auto crop = run_cli("models --model resnet --model-option crop=80");
  ASSERT_EQ(crop.code, 0) << crop.output;
  EXPECT_NE(crop.output.find("resnet  (1227745 parameters, 0.2109 GFLOP per patch)"), std::string::npos) << crop.output;
  EXPECT_NE(crop.output.find("[defaults; the sizes are with crop=80]"), std::string::npos) << crop.output;
  EXPECT_EQ(crop.output.find("seed-cnn"), std::string::npos) << crop.output;
  expect_user_error(run_cli("models --model resnet --model-option crop=200"), "crop (16 to 96)");
}

TEST_F(Cli, PredictWritesOneSortedRowPerImage) {
  fs::path out = *dir_ / "submission.csv";
  auto r = run_cli("predict " + quote(*dir_ / "run/best.pt") + " " + quote(*dir_ / "data/test") + " --out " + quote(out));
  ASSERT_EQ(r.code, 0) << r.output;
  auto rows = lines_of(read_text(out));
  ASSERT_EQ(rows.size(), 25u);
  EXPECT_EQ(rows[0], "id,label");
  EXPECT_TRUE(std::is_sorted(rows.begin() + 1, rows.end()));
  for (std::size_t i = 1; i < rows.size(); ++i) {
    EXPECT_EQ(rows[i].find(','), 40u) << rows[i];
    double p = std::stod(rows[i].substr(41));
    EXPECT_GE(p, 0.0);
    EXPECT_LE(p, 1.0);
  }
  // An existing output is refused and left as it was.
  std::string before = read_text(out);
  auto again = run_cli("predict " + quote(*dir_ / "run/best.pt") + " " + quote(*dir_ / "data/test") + " --out " + quote(out));
  expect_user_error(again, "exists; pass --overwrite");
  EXPECT_EQ(read_text(out), before);
}

// --stain-norm: fitted at training, kept with the run, and applied the same way by every
// command that scores; refused where it cannot be carried (export) or is asked for wrongly.
TEST_F(Cli, StainNormIsFittedKeptAndAppliedAlikeByEvaluateAndPredict) {
  fs::path run = *dir_ / "stain";
  auto r = run_cli("train " + quote(*dir_ / "data") + " --out " + quote(run) +
                   " --stain-norm macenko --epochs 1 --batch 32 --threads 2 --seed 5 --no-progress");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("stain normalization (macenko, fitted to 120 training patches)"), std::string::npos) << r.output;
  auto config = nlohmann::json::parse(read_text(run / "config.json"));
  EXPECT_EQ(config["stain_norm"]["method"], "macenko");
  EXPECT_EQ(config["stain_norm"]["haematoxylin"].size(), 3u);
  EXPECT_GT(config["stain_norm"]["max_amount"][0].get<double>(), 0.0);

  // evaluate (the whole set in memory) and predict (streamed in batches of 7) give each patch
  // the same probability: both recolour it to the run's reference first.
  ASSERT_EQ(
      run_cli("evaluate " + quote(run / "best.pt") + " " + quote(*dir_ / "data") + " --out " + quote(*dir_ / "stain_eval")).code,
      0);
  ASSERT_EQ(run_cli("predict " + quote(run / "best.pt") + " " + quote(*dir_ / "data/train") + " --batch 7 --out " +
                    quote(*dir_ / "stain.csv"))
                .code,
            0);
  std::map<std::string, double> evaluated;
  auto rows = lines_of(read_text(*dir_ / "stain_eval/predictions.csv"));
  for (std::size_t i = 1; i < rows.size(); ++i)
    evaluated[rows[i].substr(0, rows[i].find(','))] = std::stod(rows[i].substr(rows[i].rfind(',') + 1));
  auto predicted = lines_of(read_text(*dir_ / "stain.csv"));
  ASSERT_EQ(predicted.size(), 161u);
  for (std::size_t i = 1; i < predicted.size(); ++i) {
    const auto id = predicted[i].substr(0, predicted[i].find(','));
    ASSERT_TRUE(evaluated.count(id)) << id;
    EXPECT_NEAR(std::stod(predicted[i].substr(predicted[i].find(',') + 1)), evaluated[id], 2e-6) << id;
  }

  expect_user_error(run_cli("export " + quote(run / "best.pt") + " --out " + quote(*dir_ / "stain_export.pt")),
                    "trained on stain-normalized patches (--stain-norm macenko)");
  EXPECT_FALSE(fs::exists(*dir_ / "stain_export.pt"));
  const std::string train = "train " + quote(*dir_ / "data") + " --epochs 1 --out " + quote(*dir_ / "stain_bad");
  expect_user_error(run_cli(train + " --stain-norm vahadane"), "--stain-norm vahadane: expected none, macenko or reinhard");
  expect_user_error(run_cli(train + " --stain-ref " + quote(*dir_ / "data/test")), "needs --stain-norm macenko or reinhard");
  expect_user_error(run_cli(train + " --stain-norm reinhard --stain-ref " + quote(*dir_ / "missing.png")),
                    "missing.png: cannot be read as an image");
  EXPECT_FALSE(fs::exists(*dir_ / "stain_bad"));
}

TEST_F(Cli, SameSeedGivesTheSameHistory) {
  std::string args = " --per-class 24 --epochs 2 --batch 16 --threads 1 --seed 9 --no-progress";
  auto a = run_cli("train " + quote(*dir_ / "data") + " --out " + quote(*dir_ / "seed_a") + args);
  auto b = run_cli("train " + quote(*dir_ / "data") + " --out " + quote(*dir_ / "seed_b") + args);
  ASSERT_EQ(a.code, 0) << a.output;
  ASSERT_EQ(b.code, 0) << b.output;
  EXPECT_EQ(history_without_time(*dir_ / "seed_a/history.csv"), history_without_time(*dir_ / "seed_b/history.csv"));
}

TEST_F(Cli, RecipeSetsTheFlagsNotGivenAndIsRecorded) {
  std::string args = " --per-class 24 --epochs 1 --batch 16 --threads 1 --seed 9 --no-progress";
  auto seed = run_cli("train " + quote(*dir_ / "data") + " --out " + quote(*dir_ / "recipe_seed") + args + " --recipe seed");
  ASSERT_EQ(seed.code, 0) << seed.output;
  auto config = nlohmann::json::parse(read_text(*dir_ / "recipe_seed/config.json"));
  EXPECT_EQ(config["recipe"], "seed");
  EXPECT_EQ(config["augment"], "flips");  // the notebook's, where the default recipe rotates and jitters colour
  EXPECT_EQ(config["epochs"], 1);         // a flag given with --recipe wins
  EXPECT_EQ(config["batch"], 16);
  auto over = run_cli("train " + quote(*dir_ / "data") + " --out " + quote(*dir_ / "recipe_over") + args +
                      " --recipe seed --augment dihedral");
  ASSERT_EQ(over.code, 0) << over.output;
  EXPECT_EQ(nlohmann::json::parse(read_text(*dir_ / "recipe_over/config.json"))["augment"], "dihedral");
  auto defaults = nlohmann::json::parse(read_text(*dir_ / "run/config.json"));  // no --recipe: the default recipe
  EXPECT_EQ(defaults["recipe"], "default");
  EXPECT_EQ(defaults["model"], "resnet");
  EXPECT_EQ(defaults["augment"], "dihedral+hed=0.1+shift=16");
  EXPECT_EQ(defaults["schedule"], "cosine");
  EXPECT_EQ(config["model"], "seed-cnn");
  EXPECT_EQ(config["schedule"], "plateau");
  // The default recipe's network options are recorded with the run (and its checkpoints);
  // another network starts from its own defaults; --model-option adds to the recipe's.
  EXPECT_EQ(defaults["model_options"], nlohmann::json({{"crop", 96}}));
  EXPECT_EQ(config["model_options"], nlohmann::json::object());
  auto width =
      run_cli("train " + quote(*dir_ / "data") + " --out " + quote(*dir_ / "recipe_width") + args + " --model-option width=8");
  ASSERT_EQ(width.code, 0) << width.output;
  EXPECT_EQ(nlohmann::json::parse(read_text(*dir_ / "recipe_width/config.json"))["model_options"],
            nlohmann::json({{"crop", 96}, {"width", 8}}));
  auto scored = run_cli("evaluate " + quote(*dir_ / "recipe_width/best.pt") + " " + quote(*dir_ / "data") + " --out " +
                        quote(*dir_ / "recipe_width_eval"));
  ASSERT_EQ(scored.code, 0) << scored.output;  // the checkpoint rebuilds crop 96, width 8
}

TEST_F(Cli, CosineScheduleWarmsUpThenFallsToNearZero) {
  // 48 patches less a quarter for validation: 36, batch 12, so 3 steps an epoch, 12 in all.
  auto r = run_cli("train " + quote(*dir_ / "data") + " --out " + quote(*dir_ / "cosine") +
                   " --per-class 24 --epochs 4 --batch 12 --threads 1 --seed 9 --no-progress --schedule cosine "
                   "--warmup-epochs 1 --lr 0.01 --patience 0");
  ASSERT_EQ(r.code, 0) << r.output;
  auto rows = lines_of(read_text(*dir_ / "cosine/history.csv"));
  ASSERT_EQ(rows.size(), 5u);
  std::vector<double> lr;  // the column holds each epoch's last step's rate
  for (std::size_t i = 1; i < rows.size(); ++i) {
    std::stringstream line(rows[i]);
    std::string cell;
    for (int c = 0; c <= 6; ++c) std::getline(line, cell, ',');
    lr.push_back(std::stod(cell));
  }
  const double pi = 3.141592653589793;
  EXPECT_NEAR(lr[0], 0.01, 1e-9);                                // the warm-up's last step reaches --lr
  EXPECT_NEAR(lr[1], 0.005 * (1 + std::cos(pi * 2 / 9)), 1e-6);  // step 6 of 12, 2 of the 9 after warm-up
  EXPECT_NEAR(lr[3], 0.005 * (1 + std::cos(pi * 8 / 9)), 1e-6);
  EXPECT_GT(lr[1], lr[2]);
  EXPECT_EQ(r.output.find("reducing learning rate"), std::string::npos) << "no plateau schedule on top";
}

// --teacher: the teacher scores each training patch once (here in 2 views, as predict --tta=2
// scores it, in the run's precision), the run keeps those probabilities in teacher.csv and records the flags, and its
// loss moves from the plain run's: its targets are half label, half teacher.
TEST_F(Cli, TeacherScoresTheTrainingPatchesOnceAndTheRunKeepsThem) {
  const std::string flags = " --epochs 1 --batch 32 --threads 2 --seed 5 --no-progress";
  fs::path teacher = *dir_ / "run/best.pt", run = *dir_ / "distilled";
  auto r = run_cli("train " + quote(*dir_ / "data") + " --out " + quote(run) + flags + " --teacher " + quote(teacher) +
                   " --teacher-tta 2");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("teacher (1 checkpoint, 2 views): agrees with"), std::string::npos) << r.output;
  auto config = nlohmann::json::parse(read_text(run / "config.json"));
  EXPECT_EQ(config["teacher"], nlohmann::json::array({fs::absolute(teacher).lexically_normal().string()}));
  EXPECT_EQ(config["teacher_weight"], 0.5);
  EXPECT_EQ(config["teacher_tta"], 2);

  fs::path scored = *dir_ / "teacher_predict.csv";
  // The teacher scores in the run's precision (bfloat16 where the default recipe trains under --amp).
  r = run_cli("predict " + quote(teacher) + " " + quote(*dir_ / "data/train") + " --tta=2 --out " + quote(scored) +
              (config["amp"].get<bool>() ? " --amp" : ""));
  ASSERT_EQ(r.code, 0) << r.output;
  std::map<std::string, double> expected;
  auto rows = lines_of(read_text(scored));
  for (std::size_t i = 1; i < rows.size(); ++i) expected[rows[i].substr(0, 40)] = std::stod(rows[i].substr(41));
  std::map<std::string, std::string> labels;
  auto label_rows = lines_of(read_text(*dir_ / "data/train_labels.csv"));
  for (std::size_t i = 1; i < label_rows.size(); ++i) labels[label_rows[i].substr(0, 40)] = label_rows[i].substr(41);
  auto kept = lines_of(read_text(run / "teacher.csv"));
  ASSERT_EQ(kept.size(), config["train_patches"].get<std::size_t>() + 1);
  EXPECT_EQ(kept[0], "id,label,teacher");
  for (std::size_t i = 1; i < kept.size(); ++i) {
    const std::string id = kept[i].substr(0, 40);
    ASSERT_TRUE(expected.count(id)) << kept[i];
    EXPECT_EQ(kept[i].substr(41, 1), labels[id]) << kept[i];
    EXPECT_NEAR(std::stod(kept[i].substr(43)), expected[id], 1e-5) << kept[i];
  }

  // The same run without a teacher, over it (--overwrite): another loss, and no teacher.csv left behind.
  const std::string distilled_epoch = lines_of(read_text(run / "history.csv"))[1];
  r = run_cli("train " + quote(*dir_ / "data") + " --out " + quote(run) + flags + " --overwrite");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(lines_of(read_text(run / "history.csv"))[1], distilled_epoch);
  EXPECT_FALSE(fs::exists(run / "teacher.csv"));
}

TEST_F(Cli, MaxMinutesStartsNoEpochThatWouldEndPastTheBudget) {
  auto r = run_cli("train " + quote(*dir_ / "data") + " --out " + quote(*dir_ / "budget") +
                   " --per-class 24 --epochs 5 --batch 16 --threads 1 --seed 9 --no-progress --max-minutes 0.0001");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(lines_of(read_text(*dir_ / "budget/history.csv")).size(), 2u) << "one epoch always runs, and no more fit";
  EXPECT_NE(r.output.find("time budget:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("training ends after epoch 1"), std::string::npos) << r.output;
}

TEST_F(Cli, BadFlagsAreRefusedBeforeAnyWork) {
  std::string train = "train " + quote(*dir_ / "data") + " --out " + quote(*dir_ / "bad_run");
  expect_user_error(run_cli(train + " --batch 0"), "--batch 0 must be at least 1");
  expect_user_error(run_cli(train + " --lr -0.1"), "--lr");
  expect_user_error(run_cli(train + " --val-fraction 1"), "--val-fraction");
  expect_user_error(run_cli(train + " --per-class 5000"), "--per-class 5000 is more than");
  expect_user_error(run_cli(train + " --model nope"), "unknown model 'nope'");
  expect_user_error(run_cli(train + " --recipe nope"), "--recipe nope: expected one of default, seed");
  expect_user_error(run_cli(train + " --max-minutes -1"), "--max-minutes -1 must be 0");
  expect_user_error(run_cli(train + " --schedule step"), "--schedule step: expected plateau or cosine");
  expect_user_error(run_cli(train + " --warmup-epochs 30"), "--warmup-epochs 30 must be from 0 to below --epochs");
  expect_user_error(run_cli(train + " --amp --no-amp"), "--amp excludes --no-amp");
  expect_user_error(run_cli(train + " --epochs many"), "--epochs");
  expect_user_error(run_cli(train + " --no-such-flag"), "--no-such-flag");
  expect_user_error(run_cli(train + " --ema 1"), "--ema 1 must be 0 (off)");
  expect_user_error(run_cli(train + " --mixup -0.2"), "--mixup -0.2 must be 0 (off) or a positive Beta parameter");
  expect_user_error(run_cli(train + " --label-smoothing 1"), "--label-smoothing 1 must be at least 0 (off) and below 1");
  expect_user_error(run_cli(train + " --teacher-weight 0.3"), "--teacher-weight needs --teacher CHECKPOINT");
  expect_user_error(run_cli(train + " --teacher nope.pt"), "checkpoint nope.pt does not exist");
  const std::string teach = train + " --teacher " + quote(*dir_ / "run/best.pt");
  expect_user_error(run_cli(teach + " --teacher-weight 0"), "--teacher-weight 0 must be above 0 and at most 1");
  expect_user_error(run_cli(teach + " --teacher-tta 3"), "--teacher-tta 3 must be 1, 2, 4 or 8");
  expect_user_error(run_cli(train + " --memory-format nhwc"), "--memory-format nhwc: expected auto, nchw or channels-last");
  expect_user_error(run_cli(train + " --augment blur"), "steps joined by '+'");
  EXPECT_FALSE(fs::exists(*dir_ / "bad_run")) << "nothing half-written";
  expect_user_error(run_cli("train " + quote(*dir_ / "data") + " --out " + quote(*dir_ / "run")), "exists; pass --overwrite");
}

TEST_F(Cli, BadInputFilesGetOneLineNamingThem) {
  TempDir bad;
  fs::create_directories(bad / "empty");
  expect_user_error(
      run_cli("predict " + quote(*dir_ / "run/best.pt") + " " + quote(bad / "empty") + " --out " + quote(bad / "s.csv")),
      "no images found");
  write_text(bad / "broken.pt", "not a checkpoint");
  expect_user_error(
      run_cli("predict " + quote(bad / "broken.pt") + " " + quote(*dir_ / "data/test") + " --out " + quote(bad / "s.csv")),
      "broken.pt is damaged");
  fs::create_directories(bad / "imgs");
  fs::copy(*dir_ / "data/test", bad / "imgs", fs::copy_options::recursive);
  write_text(bad / "imgs/zzcorrupt.tif", std::string("II*\0garbage", 11));  // a TIFF signature, then garbage
  auto r = run_cli("predict " + quote(*dir_ / "run/best.pt") + " " + quote(bad / "imgs") + " --out " + quote(bad / "s.csv"));
  expect_user_error(r, "zzcorrupt.tif");
  EXPECT_FALSE(fs::exists(bad / "s.csv")) << "no half-written submission";
  auto skip = run_cli("predict --skip-bad " + quote(*dir_ / "run/best.pt") + " " + quote(bad / "imgs") + " --out " +
                      quote(bad / "s.csv"));
  ASSERT_EQ(skip.code, 0) << skip.output;
  EXPECT_EQ(lines_of(read_text(bad / "s.csv")).size(), 25u);
  EXPECT_NE(read_text(bad / "s.csv.skipped.csv").find("zzcorrupt"), std::string::npos);
  auto unwritable =
      run_cli("predict " + quote(*dir_ / "run/best.pt") + " " + quote(*dir_ / "data/test") + " --out /proc/histoscan.csv");
  expect_user_error(unwritable, "cannot write /proc/histoscan.csv");
  write_text(bad / "labels/train_labels.csv", "id,name\n");
  expect_user_error(run_cli("inspect " + quote(*dir_ / "data/train") + " --labels " + quote(bad / "labels/train_labels.csv")),
                    "no 'label' column");
}

TEST_F(Cli, ScanWritesHeatmapTilesRegionsAndSummaryForATestSlide) {
  TempDir dir;
  auto r = run_cli("synth-slide " + quote(dir / "slide.tif") + " --cols 12 --rows 9 --tumour 6,3,4,3 --seed 3");
  ASSERT_EQ(r.code, 0) << r.output;
  auto truth = nlohmann::json::parse(read_text(dir / "slide.truth.json"));
  r = run_cli("scan " + quote(*dir_ / "run/best.pt") + " " + quote(dir / "slide.tif") + " --out " + quote(dir / "scan") +
              " --threads 2 --no-progress");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("reading level 1 as is"), std::string::npos) << r.output;  // 0.486 um/px slide, 0.972 network

  auto s = nlohmann::json::parse(read_text(dir / "scan/summary.json"));
  EXPECT_EQ(s["level"], 1);
  EXPECT_EQ(s["vendor"], "generic-tiff");
  EXPECT_GT(s["tiles_scored"].get<int>(), 0);
  EXPECT_LT(s["tiles_scored"].get<int>(), s["tiles_total"].get<int>()) << "glass is skipped";
  EXPECT_GT(s["tissue_area_mm2"].get<double>(), 0);
  EXPECT_GT(s["peak_rss_mib"].get<double>(), 0);

  // Every scored tile's centre lies on the mosaic: the glass around it is never scored. (This
  // run's network is too small to tell tumour apart; test_real_data checks the region found.)
  auto rows = lines_of(read_text(dir / "scan/tiles.csv"));
  ASSERT_EQ(rows[0], "x,y,level,probability,smoothed");
  ASSERT_EQ(rows.size(), s["tiles_scored"].get<std::size_t>() + 1);
  auto m = truth["mosaic"];
  double half = s["tile_level0_px"].get<double>() / 2;
  for (std::size_t i = 1; i < rows.size(); ++i) {
    double x, y, p, sm;
    int level;
    ASSERT_EQ(std::sscanf(rows[i].c_str(), "%lf,%lf,%d,%lf,%lf", &x, &y, &level, &p, &sm), 5) << rows[i];
    double cx = x + half, cy = y + half;
    EXPECT_TRUE(cx >= m[0].get<double>() && cx < m[0].get<double>() + m[2].get<double>() && cy >= m[1].get<double>() &&
                cy < m[1].get<double>() + m[3].get<double>())
        << "tile on glass: " << rows[i];
    EXPECT_EQ(level, 1);
    EXPECT_TRUE(p >= 0 && p <= 1 && sm >= 0 && sm <= 1) << rows[i];
  }

  auto geo = nlohmann::json::parse(read_text(dir / "scan/tumour.geojson"));
  EXPECT_EQ(geo["type"], "FeatureCollection");
  EXPECT_EQ(geo["features"].size(), s["tumour_regions"].get<std::size_t>());
  EXPECT_TRUE(fs::file_size(dir / "scan/heatmap.png") > 1000);
  EXPECT_EQ(read_text(dir / "scan/heatmap.png").substr(1, 3), "PNG");
}

TEST_F(Cli, ScanAnswersBadSlidesLevelsAndBlankGlass) {
  TempDir dir;
  std::string model = quote(*dir_ / "run/best.pt");
  write_text(dir / "notes.svs", "not a slide");
  expect_user_error(run_cli("scan " + model + " " + quote(dir / "notes.svs") + " --out " + quote(dir / "a")),
                    "notes.svs: not a slide or image");
  EXPECT_FALSE(fs::exists(dir / "a")) << "no output folder for a failed scan";
  auto r = run_cli("synth-slide " + quote(dir / "s.tif") + " --cols 6 --rows 6 --tumour 2,2,2,2");
  ASSERT_EQ(r.code, 0) << r.output;
  expect_user_error(run_cli("scan " + model + " " + quote(dir / "s.tif") + " --level 7 --out " + quote(dir / "b")),
                    "--level 7: ");
  EXPECT_FALSE(fs::exists(dir / "b"));
  expect_user_error(run_cli("scan " + model + " " + quote(dir / "s.tif") + " --out /proc/histoscan-scan"),
                    "/proc/histoscan-scan");
  expect_user_error(run_cli("scan " + model + " " + quote(dir / "s.tif") + " --stride 0 --out " + quote(dir / "c")),
                    "--stride 0");

  // Blank glass: an empty heatmap and a warning, not an error.
  cv::imwrite((dir / "glass.png").string(), cv::Mat(480, 640, CV_8UC3, cv::Scalar(242, 242, 242)));
  r = run_cli("scan " + model + " " + quote(dir / "glass.png") + " --out " + quote(dir / "g"));
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("no tissue found"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("records no microns per pixel"), std::string::npos) << r.output;
  EXPECT_EQ(lines_of(read_text(dir / "g/tiles.csv")).size(), 1u);
  auto s = nlohmann::json::parse(read_text(dir / "g/summary.json"));
  EXPECT_EQ(s["tiles_scored"], 0);
  EXPECT_EQ(s["call"], "no tumour");
  EXPECT_EQ(nlohmann::json::parse(read_text(dir / "g/tumour.geojson"))["features"].size(), 0u);
  EXPECT_TRUE(fs::exists(dir / "g/heatmap.png"));
}

// A cohort: a manifest of slides with labels, among them an unreadable file, one cut short and
// one without tissue. Every bad slide is a row of failures.csv; the good ones are scanned, the
// exit code says some failed (3); a re-run skips what is done; `metrics` reads cohort.csv.
TEST_F(Cli, ScanCohortRecordsFailuresResumesAndReportsPerSlide) {
  TempDir dir;
  std::string manifest = "slide,label\n";
  for (int i = 0; i < 3; ++i) {
    std::string name = "s" + std::to_string(i) + ".tif";
    auto r =
        run_cli("synth-slide " + quote(dir / name) + " --cols 6 --rows 5 --tumour 2,1,3,3" + " --seed " + std::to_string(i + 1));
    ASSERT_EQ(r.code, 0) << r.output;
    manifest += name + "," + (i == 1 ? "normal" : "tumour") + "\n";
  }
  write_text(dir / "notes.svs", "not a slide");
  fs::copy_file(dir / "s0.tif", dir / "cut.tif");
  fs::resize_file(dir / "cut.tif", fs::file_size(dir / "s0.tif") / 3);
  cv::imwrite((dir / "glass.png").string(), cv::Mat(480, 640, CV_8UC3, cv::Scalar(242, 242, 242)));
  manifest += "notes.svs,0\ncut.tif,1\nglass.png,\n";
  write_text(dir / "manifest.csv", manifest);
  std::string model = quote(*dir_ / "run/best.pt");
  std::string cmd = "scan " + model + " " + quote(dir / "manifest.csv") + " --out " + quote(dir / "cohort") +
                    " --threads 2 --no-progress --stride 64";  // fewer tiles: this test also runs under AddressSanitizer
  auto r = run_cli(cmd);
  EXPECT_EQ(r.code, 3) << r.output;
  EXPECT_NE(r.output.find("cohort of 6 slides: 3 scanned, 3 failed"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("histoscan: 3 of 6 slides failed; see "), std::string::npos) << r.output;

  auto rows = csv_without_column(dir / "cohort/cohort.csv", 8);
  ASSERT_EQ(rows.size(), 7u);
  EXPECT_EQ(rows[0], "slide,status,call,top_k_mean,max_probability,tumour_mm2,tissue_mm2,tiles_scored,,label");
  for (int i = 1; i <= 3; ++i) EXPECT_EQ(rows[i].substr(0, 6), "s" + std::to_string(i - 1) + ",ok,") << rows[i];
  EXPECT_EQ(rows[4], "notes,failed,,,,,,,,0");
  EXPECT_EQ(rows[6], "glass,failed,,,,,,,,") << "no label";
  auto failures = read_text(dir / "cohort/failures.csv");
  EXPECT_NE(failures.find("notes.svs: not a slide or image"), std::string::npos) << failures;
  EXPECT_NE(failures.find("cut,"), std::string::npos) << failures;
  EXPECT_NE(failures.find("records no microns per pixel"), std::string::npos) << failures;
  for (const char* f : {"heatmap.png", "tissue.png", "tiles.csv", "tumour.geojson", "summary.json", "status.json"})
    EXPECT_TRUE(fs::exists(dir / "cohort/slides/s1" / f)) << f;
  EXPECT_FALSE(fs::exists(dir / "cohort/slides/cut/summary.json")) << "a failed slide keeps no half set of outputs";
  EXPECT_TRUE(fs::exists(dir / "cohort/metrics/metrics.json"));
  EXPECT_TRUE(fs::exists(dir / "cohort/cohort.html"));

  // Fixed, the glass gets its resolution and still fails (no tissue); the rest is skipped.
  write_text(dir / "manifest.csv", "slide,label,mpp\ns0.tif,1,\ns1.tif,0,\ns2.tif,1,\nglass.png,,0.5\n");
  r = run_cli(cmd);
  EXPECT_EQ(r.code, 3) << r.output;
  EXPECT_NE(r.output.find("skipped 3 done before"), std::string::npos) << r.output;
  EXPECT_NE(read_text(dir / "cohort/failures.csv").find("no tissue found"), std::string::npos);
  auto again = csv_without_column(dir / "cohort/cohort.csv", 8);
  ASSERT_EQ(again.size(), 5u);
  for (int i = 1; i <= 3; ++i) EXPECT_EQ(again[i], rows[i]);

  // Slide-level metrics from the table, as from any predictions CSV.
  r = run_cli("metrics " + quote(dir / "cohort/cohort.csv") + " --json");
  ASSERT_EQ(r.code, 0) << r.output;
  auto m = nlohmann::json::parse(r.output.substr(r.output.find('{')));
  EXPECT_EQ(m["n"], 3);
  EXPECT_EQ(m["positives"], 2);

  // Other settings are refused until --rescan; a folder of slides is a cohort too.
  std::string other = cmd;
  other.replace(other.find("--stride 64"), 11, "--stride 48");
  expect_user_error(run_cli(other), "other settings (stride was 64, now 48)");
  fs::create_directories(dir / "folder");
  fs::copy_file(dir / "s1.tif", dir / "folder/s1.tif");
  r = run_cli("scan " + model + " " + quote(dir / "folder") + " --out " + quote(dir / "f") + " --threads 2 --no-progress");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(lines_of(read_text(dir / "f/cohort.csv")).size(), 2u);
  EXPECT_EQ(lines_of(read_text(dir / "f/failures.csv")).size(), 1u);
}

TEST_F(Cli, ScanCohortRefusesBadManifestsWritingNothing) {
  TempDir dir;
  auto r = run_cli("synth-slide " + quote(dir / "a.tif") + " --cols 4 --rows 4 --tumour 1,1,2,2");
  ASSERT_EQ(r.code, 0) << r.output;
  std::string model = quote(*dir_ / "run/best.pt");
  auto refused = [&](const std::string& text, const std::string& fragment) {
    write_text(dir / "m.csv", text);
    expect_user_error(run_cli("scan " + model + " " + quote(dir / "m.csv") + " --out " + quote(dir / "out")), fragment);
    EXPECT_FALSE(fs::exists(dir / "out")) << text;
  };
  refused("file,label\na.tif,0\n", "no 'slide' column");
  refused("slide,label\na.tif,suspicious\n", "m.csv line 2: label 'suspicious'");
  refused("slide\na.tif\na.tif\n", "m.csv line 3: slide");
  refused("slide\nb.tif\n", "m.csv line 2: slide b.tif does not exist");
}

namespace {

// A models folder as models/ ships one: models.json naming the Cli run's best.pt "tiny".
fs::path write_models_dir(const fs::path& dir, const fs::path& checkpoint) {
  fs::create_directories(dir);
  fs::copy_file(checkpoint, dir / "tiny.pt");
  std::ofstream(dir / "models.json") << R"({"default": "tiny", "models": [{"name": "tiny", "file": "tiny.pt",
    "description": "the Cli tests' run", "command": "histoscan train DATA --out RUN --epochs 2",
    "metrics": {"valid": {"auc": 0.5, "accuracy": 0.5, "data": "synthetic"}}}]})";
  return dir;
}

}  // namespace

TEST_F(Cli, BuiltinModelScoresWhenNoCheckpointIsGivenAndByItsName) {
  TempDir dir;
  const std::string env = "HISTOSCAN_MODELS=" + quote(write_models_dir(dir / "models", *dir_ / "run/best.pt")) + " ";
  auto sh = [&](const std::string& args) { return run_cli_env(env, args); };

  auto listed = sh("models");
  ASSERT_EQ(listed.code, 0) << listed.output;
  EXPECT_NE(listed.output.find("use tiny when no checkpoint is given"), std::string::npos) << listed.output;
  EXPECT_NE(listed.output.find("trained with: histoscan train DATA --out RUN --epochs 2"), std::string::npos) << listed.output;

  // predict: no checkpoint, the name, and the file give the same bytes.
  auto r = sh("predict " + quote(*dir_ / "data/test") + " --out " + quote(dir / "none.csv"));
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("no checkpoint given: using the built-in model tiny"), std::string::npos) << r.output;
  ASSERT_EQ(sh("predict tiny " + quote(*dir_ / "data/test") + " --out " + quote(dir / "name.csv")).code, 0);
  ASSERT_EQ(
      run_cli("predict " + quote(*dir_ / "run/best.pt") + " " + quote(*dir_ / "data/test") + " --out " + quote(dir / "file.csv"))
          .code,
      0);
  EXPECT_EQ(read_text(dir / "none.csv"), read_text(dir / "file.csv"));
  EXPECT_EQ(read_text(dir / "name.csv"), read_text(dir / "file.csv"));

  // evaluate: no checkpoint scores as the file does.
  ASSERT_EQ(sh("evaluate " + quote(*dir_ / "data") + " --out " + quote(dir / "eval")).code, 0);
  ASSERT_EQ(
      run_cli("evaluate " + quote(*dir_ / "run/best.pt") + " " + quote(*dir_ / "data") + " --out " + quote(dir / "eval_file"))
          .code,
      0);
  EXPECT_EQ(read_text(dir / "eval/predictions.csv"), read_text(dir / "eval_file/predictions.csv"));

  // scan: a slide alone is scored by the built-in model; the model's name alone is no slide.
  ASSERT_EQ(run_cli("synth-slide " + quote(dir / "slide.tif") + " --cols 6 --rows 5 --tumour 2,1,2,2 --seed 3").code, 0);
  r = sh("scan " + quote(dir / "slide.tif") + " --out " + quote(dir / "scan") + " --threads 2 --no-progress");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("using the built-in model tiny"), std::string::npos) << r.output;
  EXPECT_TRUE(fs::exists(dir / "scan/summary.json"));
  expect_user_error(sh("scan tiny --out " + quote(dir / "scan2")), "no slides given");
  EXPECT_FALSE(fs::exists(dir / "scan2"));

  // A built-in model is never rewritten.
  const std::string before = read_text(dir / "models/tiny.pt");
  expect_user_error(sh("evaluate tiny " + quote(*dir_ / "data") + " --out " + quote(dir / "eval2") + " --save-threshold"),
                    "is a built-in model, which histoscan does not rewrite");
  EXPECT_EQ(read_text(dir / "models/tiny.pt"), before);
  EXPECT_FALSE(fs::exists(dir / "eval2"));

  // No models folder: one line saying what to give.
  auto missing = run_cli_env("HISTOSCAN_MODELS=" + quote(dir / "nowhere") + " ",
                             "predict " + quote(*dir_ / "data/test") + " --out " + quote(dir / "x.csv"));
  expect_user_error(missing, "no checkpoint given and no built-in model found");
  EXPECT_FALSE(fs::exists(dir / "x.csv"));
}

// The model that ships in models/ scores the sample that ships in samples/pcam to the figures its
// card (models/models.json) and its README state: what a newcomer gets with no checkpoint.
TEST(BuiltinModel, ScoresTheSampleTestPatchesAsItsCardStates) {
  const fs::path source = HISTOSCAN_SOURCE_DIR;
  const nlohmann::json card = default_model_card();
  ASSERT_TRUE(card.contains("metrics")) << card.dump();
  const auto stated = card["metrics"]["samples/pcam/test"];
  TempDir dir;
  auto r = run_cli_env("env -u HISTOSCAN_MODELS ",
                       "evaluate " + quote(source / "samples/pcam/test") + " --out " + quote(dir / "eval") + " --threads 2");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("using the built-in model " + card["name"].get<std::string>()), std::string::npos) << r.output;
  auto m = nlohmann::json::parse(read_text(dir / "eval/metrics.json"));
  EXPECT_NEAR(m["auc"].get<double>(), stated["auc"].get<double>(), 1e-4);
  // Another CPU may sum in another order: a probability within 1e-6 of the cut-off could then
  // change sides, moving accuracy by one patch (AUC by far less).
  EXPECT_NEAR(m["accuracy"].get<double>(), stated["accuracy"].get<double>(), 1.01 / m["n"].get<double>());
  EXPECT_TRUE(models_readme_states(stated["auc"].get<double>())) << "models/README.md does not state AUC " << stated["auc"];
}
