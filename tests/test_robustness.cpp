// Interruptions: a killed or Ctrl-C'd run resumes to the weights an uninterrupted run
// reaches, and no kill leaves a half-written file under its final name.
#include <gtest/gtest.h>

#include <chrono>
#include <random>
#include <sstream>
#include <thread>

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "histoscan/eval/analysis.h"
#include "histoscan/model/checkpoint.h"
#include "histoscan/util/error.h"
#include "test_util.h"

using namespace histoscan;
using namespace histoscan::test;

namespace {

const std::vector<std::string> kTrainFlags = {"--epochs", "4", "--batch", "32", "--threads", "1", "--seed", "3", "--no-progress"};

std::vector<std::string> train_args(const fs::path& data, const fs::path& out) {
  std::vector<std::string> a = {"train", data.string(), "--out", out.string()};
  a.insert(a.end(), kTrainFlags.begin(), kTrainFlags.end());
  return a;
}

std::size_t history_rows(const fs::path& run) {
  auto lines = lines_of(read_text(run / "history.csv"));
  return lines.empty() ? 0 : lines.size() - 1;
}

void wait_for_rows(const fs::path& run, std::size_t rows) {
  for (int i = 0; i < 6000 && history_rows(run) < rows; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
}

double max_difference(const fs::path& a, const fs::path& b) {
  auto x = model::load_checkpoint(a), y = model::load_checkpoint(b);
  double worst = 0;
  auto px = x.net->named_parameters(), py = y.net->named_parameters();
  for (const auto& p : px) worst = std::max(worst, (p.value() - py[p.key()]).abs().max().item<double>());
  auto bx = x.net->named_buffers(), by = y.net->named_buffers();
  for (const auto& b : bx)
    worst = std::max(worst, (b.value().to(torch::kFloat64) - by[b.key()].to(torch::kFloat64)).abs().max().item<double>());
  return worst;
}

// The history without its seconds column.
std::string history_numbers(const fs::path& run) {
  std::string out;
  for (auto& line : lines_of(read_text(run / "history.csv"))) out += line.substr(0, line.rfind(',')) + "\n";
  return out;
}

class Robustness : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    auto r = run_cli("synth " + quote(*dir_ / "data") + " --train 200 --test 60 --seed 5");
    ASSERT_EQ(r.code, 0) << r.output;
    std::string flags;
    for (const auto& f : kTrainFlags) flags += " " + f;
    r = run_cli("train " + quote(*dir_ / "data") + " --out " + quote(*dir_ / "full") + flags);
    ASSERT_EQ(r.code, 0) << r.output;
  }
  static void TearDownTestSuite() { delete dir_; }
  static TempDir* dir_;
};
TempDir* Robustness::dir_ = nullptr;

}  // namespace

// Starts `args` (a train command writing to run), kills it (SIGKILL) once 2 epochs are in its
// history, resumes it, and expects it to end as the uninterrupted run `full` did.
static void expect_killed_run_resumes_as(const std::vector<std::string>& args, const fs::path& run, const fs::path& full,
                                         const fs::path& log) {
  pid_t pid = spawn_cli(args, log);
  wait_for_rows(run, 2);
  kill(pid, SIGKILL);
  wait_exit(pid);
  ASSERT_GE(history_rows(run), 2u) << read_text(log);
  auto r = run_cli("train --resume " + quote(run) + " --no-progress");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("resuming at epoch"), std::string::npos) << r.output;
  EXPECT_LE(max_difference(full / "best.pt", run / "best.pt"), 1e-6);
  EXPECT_LE(max_difference(full / "last.pt", run / "last.pt"), 1e-6);
  EXPECT_EQ(history_numbers(full), history_numbers(run));
}

TEST_F(Robustness, KilledRunResumesToTheUninterruptedWeights) {
  expect_killed_run_resumes_as(train_args(*dir_ / "data", *dir_ / "killed"), *dir_ / "killed", *dir_ / "full",
                               *dir_ / "killed.log");
}

// The cosine schedule (per step) and the weight average (--ema) are state a resumed run must
// carry too: the same run killed after epoch 2 ends where the uninterrupted one does.
TEST_F(Robustness, KilledRunWithCosineScheduleAndEmaResumesToTheUninterruptedWeights) {
  const std::vector<std::string> extra = {"--schedule", "cosine", "--warmup-epochs", "1", "--ema", "0.9"};
  auto args = [&](const fs::path& out) {
    auto a = train_args(*dir_ / "data", out);
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  fs::path full = *dir_ / "cosine_full", run = *dir_ / "cosine_killed";
  pid_t pid = spawn_cli(args(full), *dir_ / "cosine_full.log");
  ASSERT_EQ(wait_exit(pid), 0) << read_text(*dir_ / "cosine_full.log");
  expect_killed_run_resumes_as(args(run), run, full, *dir_ / "cosine_killed.log");
  // And the average is what was checkpointed: not the raw weights of the plain run.
  EXPECT_GT(max_difference(*dir_ / "full/last.pt", full / "last.pt"), 1e-3);
  EXPECT_EQ(model::load_checkpoint(full / "last.pt").meta["weights"], "exponential moving average, decay 0.9");
}

// --teacher: a resumed run trains towards the probabilities its first start kept in
// teacher.csv, so it ends as the uninterrupted run did even with the teacher's file gone.
TEST_F(Robustness, KilledDistillationRunResumesFromItsKeptTeacherProbabilities) {
  fs::path teacher = *dir_ / "teacher.pt";
  fs::copy_file(*dir_ / "full/best.pt", teacher, fs::copy_options::overwrite_existing);
  auto args = [&](const fs::path& out) {
    auto a = train_args(*dir_ / "data", out);
    a.insert(a.end(), {"--teacher", teacher.string(), "--teacher-tta", "2", "--teacher-weight", "0.7"});
    return a;
  };
  fs::path full = *dir_ / "kd_full", run = *dir_ / "kd_killed";
  pid_t pid = spawn_cli(args(full), *dir_ / "kd_full.log");
  ASSERT_EQ(wait_exit(pid), 0) << read_text(*dir_ / "kd_full.log");
  pid = spawn_cli(args(run), *dir_ / "kd_killed.log");
  wait_for_rows(run, 2);
  kill(pid, SIGKILL);
  wait_exit(pid);
  ASSERT_GE(history_rows(run), 2u) << read_text(*dir_ / "kd_killed.log");
  fs::remove(teacher);
  auto r = run_cli("train --resume " + quote(run) + " --no-progress");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_LE(max_difference(full / "best.pt", run / "best.pt"), 1e-6);
  EXPECT_EQ(history_numbers(full), history_numbers(run));
  EXPECT_GT(max_difference(*dir_ / "full/last.pt", full / "last.pt"), 1e-3) << "the teacher moved the run";
  // A kept file that lacks a patch is refused, naming the file.
  write_text(run / "teacher.csv", "id,label,teacher\n");
  r = run_cli("train --resume " + quote(run) + " --no-progress");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find((run / "teacher.csv").string() + " has no teacher probability for patch"), std::string::npos)
      << r.output;
}

TEST_F(Robustness, CtrlCSavesLastAndSaysHowToResume) {
  fs::path run = *dir_ / "interrupted";
  pid_t pid = spawn_cli(train_args(*dir_ / "data", run), *dir_ / "int.log");
  wait_for_rows(run, 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // somewhere inside epoch 2
  kill(pid, SIGINT);
  int code = wait_exit(pid);
  std::string log = read_text(*dir_ / "int.log");
  if (code == 0) GTEST_SKIP() << "the run finished before the signal arrived";
  EXPECT_EQ(code, 130) << log;
  EXPECT_NE(log.find("histoscan train --resume " + run.string()), std::string::npos) << log;
  EXPECT_NO_THROW(model::load_checkpoint(run / "last.pt"));
  auto r = run_cli("train --resume " + quote(run) + " --no-progress");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_LE(max_difference(*dir_ / "full/best.pt", run / "best.pt"), 1e-6);
  EXPECT_EQ(history_numbers(*dir_ / "full"), history_numbers(run));
}

TEST_F(Robustness, ResumeRefusesFinishedAndForeignFolders) {
  auto r = run_cli("train --resume " + quote(*dir_ / "full"));
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("this run finished"), std::string::npos) << r.output;
  r = run_cli("train --resume " + quote(*dir_ / "data"));
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("not a run folder"), std::string::npos) << r.output;
}

TEST_F(Robustness, SigkillAtRandomMomentsLeavesOnlyCompleteFiles) {
  std::mt19937 rng(17);
  std::uniform_int_distribution<int> delay_ms(50, 4000);
  fs::path ckpt = *dir_ / "full/best.pt";
  for (int round = 0; round < 10; ++round) {
    bool train = round % 2 == 0;
    fs::path out = *dir_ / ("kill" + std::to_string(round));
    fs::create_directories(out);
    std::vector<std::string> args =
        train ? train_args(*dir_ / "data", out / "run") : std::vector<std::string>{"predict",
                                                                                   ckpt.string(),
                                                                                   (*dir_ / "data/test").string(),
                                                                                   "--out",
                                                                                   (out / "s.csv").string(),
                                                                                   "--batch",
                                                                                   "4",
                                                                                   "--threads",
                                                                                   "1"};
    pid_t pid = spawn_cli(args, *dir_ / "kill.log");
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(rng)));
    kill(pid, SIGKILL);
    wait_exit(pid);
    for (const auto& entry : fs::recursive_directory_iterator(out)) {
      std::string name = entry.path().filename().string();
      if (!entry.is_regular_file() || name[0] == '.') continue;  // temporaries never carry a final name
      SCOPED_TRACE(entry.path().string());
      if (name == "config.json") EXPECT_NO_THROW(nlohmann::json::parse(read_text(entry.path())));
      else if (name == "history.csv") {
        for (const auto& line : lines_of(read_text(entry.path())))
          EXPECT_EQ(std::count(line.begin(), line.end(), ','), 7) << line;
      } else if (name == "best.pt" || name == "last.pt") EXPECT_NO_THROW(model::load_checkpoint(entry.path()));
      else if (name == "resume.pt") EXPECT_GT(fs::file_size(entry.path()), 1000u);
      else if (name == "s.csv") EXPECT_EQ(lines_of(read_text(entry.path())).size(), 61u);
      else ADD_FAILURE() << "unexpected file";
    }
  }
}

TEST_F(Robustness, ExplodingLossStopsNamingEpochAndStep) {
  auto r = run_cli("train " + quote(*dir_ / "data") + " --out " + quote(*dir_ / "nan") +
                   " --lr 1e30 --epochs 2 --batch 32 --no-progress");
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_NE(r.output.find("the loss became"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("at epoch 1 step"), std::string::npos) << r.output;
}

// A cohort killed (SIGKILL) at seeded random moments, and started again each time, ends with
// the outputs of an uninterrupted run: the same cohort.csv (but for the seconds) and the same
// tiles of every slide; no kill leaves a file under its final name that does not parse.
TEST_F(Robustness, CohortKilledAtRandomMomentsEndsAsAnUninterruptedRun) {
  const fs::path dir = *dir_ / "cohort";
  fs::create_directories(dir);
  std::string manifest = "slide,label\n";
  for (int i = 0; i < 4; ++i) {
    std::string name = "s" + std::to_string(i) + ".tif";
    auto r = run_cli("synth-slide " + quote(dir / name) + " --cols 8 --rows 6 --tumour 2,1,3,3 --seed " + std::to_string(i + 1));
    ASSERT_EQ(r.code, 0) << r.output;
    manifest += name + "," + std::to_string(i % 2) + "\n";
  }
  write_text(dir / "manifest.csv", manifest);
  auto args = [&](const fs::path& out) {
    return std::vector<std::string>{"scan",
                                    (*dir_ / "full/best.pt").string(),
                                    (dir / "manifest.csv").string(),
                                    "--out",
                                    out.string(),
                                    "--threads",
                                    "1",
                                    "--no-progress",
                                    "--batch",
                                    "16"};
  };
  ASSERT_EQ(wait_exit(spawn_cli(args(dir / "full"), dir / "full.log")), 0) << read_text(dir / "full.log");

  std::mt19937 rng(29);
  std::uniform_int_distribution<int> delay_ms(100, 2500);
  const fs::path out = dir / "killed";
  int finished = 0;
  for (int round = 0; round < 8; ++round) {
    pid_t pid = spawn_cli(args(out), dir / "killed.log");
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(rng)));
    kill(pid, SIGKILL);
    finished += wait_exit(pid) == 0;
    if (!fs::exists(out)) continue;
    for (const auto& entry : fs::recursive_directory_iterator(out)) {
      std::string name = entry.path().filename().string();
      if (!entry.is_regular_file() || name[0] == '.') continue;  // temporaries never carry a final name
      SCOPED_TRACE(entry.path().string());
      std::string ext = entry.path().extension().string();
      if (ext == ".json" || ext == ".geojson") {
        EXPECT_NO_THROW(nlohmann::json::parse(read_text(entry.path())));
      } else if (ext == ".png") {
        EXPECT_EQ(read_text(entry.path()).substr(1, 3), "PNG");
      } else if (ext == ".csv") {
        EXPECT_FALSE(read_text(entry.path()).empty());
      }
    }
  }
  std::cout << finished << " of 8 killed runs had finished before the signal\n";
  auto r = run_cli("scan " + quote(*dir_ / "full/best.pt") + " " + quote(dir / "manifest.csv") + " --out " + quote(out) +
                   " --threads 1 --no-progress --batch 16");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_EQ(csv_without_column(out / "cohort.csv", 8), csv_without_column(dir / "full/cohort.csv", 8));
  for (int i = 0; i < 4; ++i) {
    fs::path s = fs::path("slides") / ("s" + std::to_string(i));
    EXPECT_EQ(read_text(out / s / "tiles.csv"), read_text(dir / "full" / s / "tiles.csv")) << s;
    EXPECT_EQ(read_text(out / s / "tumour.geojson"), read_text(dir / "full" / s / "tumour.geojson")) << s;
  }
  EXPECT_EQ(read_text(out / "failures.csv"), "slide,path,error\n");
}
