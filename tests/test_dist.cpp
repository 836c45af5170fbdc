// Data-parallel training: two ranks of `histoscan train` on loopback over Gloo, as torchrun
// would start them, against one process with the same global batch.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <thread>

#include <torch/torch.h>

#include "cli_util.h"
#include "histoscan/dist/dist.h"
#include "histoscan/dist/sync_bn.h"
#include "histoscan/model/checkpoint.h"
#include "test_util.h"

using namespace histoscan;
using histoscan::test::TempDir;
namespace fs = std::filesystem;

namespace {

std::vector<std::string> rank_env(int rank, int port) {
  return {"RANK=" + std::to_string(rank), "WORLD_SIZE=2",          "LOCAL_RANK=" + std::to_string(rank),
          "LOCAL_WORLD_SIZE=2",           "MASTER_ADDR=127.0.0.1", "MASTER_PORT=" + std::to_string(port),
          "HISTOSCAN_CHECK_RANKS=1"};
}

class Dist : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir;
    auto r = test::run_cli("synth " + test::quote(*dir_ / "data") + " --train 240 --test 0 --seed 3");
    ASSERT_EQ(r.code, 0) << r.output;
  }
  static void TearDownTestSuite() { delete dir_; }

  // 180 training patches in batches of 49: steps of 49, 49, 49 and 33, split 25/24 and 17/16.
  static std::vector<std::string> train_args(const fs::path& out, const std::vector<std::string>& extra) {
    std::vector<std::string> a{"train",          (*dir_ / "data").string(),
                               "--out",          out.string(),
                               "--batch",        "49",
                               "--seed",         "5",
                               "--threads",      "1",
                               "--no-progress",  "--model",
                               "seed-cnn",       "--no-amp",
                               "--model-option", "dropout=0"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }

  // No BatchNorm: then splitting a batch changes no arithmetic but the order of sums. And SGD:
  // Adam divides each gradient by its own running size, so where a gradient is near 0 the
  // rounding of its sum decides the sign of a step of about lr (measured: Adam runs 2.8e-3
  // apart after 8 steps); SGD keeps rounding differences rounding-sized.
  inline static const std::vector<std::string> kPlain{"--epochs",    "2",   "--model-option", "batchnorm=false",
                                                      "--optimizer", "sgd", "--lr",           "0.01"};

  // One process trained with kPlain, once for the tests that compare with it; its folder.
  static fs::path plain_single_run() {
    const auto out = *dir_ / "single";
    if (!fs::exists(out / "last.pt")) {
      auto code = test::wait_exit(test::spawn_cli(train_args(out, kPlain), *dir_ / "single.log"));
      EXPECT_EQ(code, 0) << test::read_text(*dir_ / "single.log");
    }
    return out;
  }

  // The run args(folder) makes, trained by one process into name_single and by two ranks into
  // name_ddp; whether all three exited 0 (each failure reported with its log).
  static bool train_one_and_two(const std::string& name, const std::function<std::vector<std::string>(const fs::path&)>& args) {
    const auto single = *dir_ / (name + "_single"), ddp = *dir_ / (name + "_ddp");
    const int c = test::wait_exit(test::spawn_cli(args(single), *dir_ / (name + ".log")));
    EXPECT_EQ(c, 0) << test::read_text(*dir_ / (name + ".log"));
    auto [c0, c1] = run_two(args(ddp), args(ddp), *dir_ / (name + "0.log"), *dir_ / (name + "1.log"));
    EXPECT_EQ(c0, 0) << test::read_text(*dir_ / (name + "0.log"));
    EXPECT_EQ(c1, 0) << test::read_text(*dir_ / (name + "1.log"));
    return c == 0 && c0 == 0 && c1 == 0;
  }

  // Rank 0 and rank 1 at once; their exit codes.
  static std::pair<int, int> run_two(const std::vector<std::string>& args0, const std::vector<std::string>& args1,
                                     const fs::path& log0, const fs::path& log1) {
    int port = dist::free_loopback_port();
    pid_t a = test::spawn_cli(args0, log0, rank_env(0, port));
    pid_t b = test::spawn_cli(args1, log1, rank_env(1, port));
    int ca = test::wait_exit(a), cb = test::wait_exit(b);
    return {ca, cb};
  }

  static TempDir* dir_;
};
TempDir* Dist::dir_ = nullptr;

double max_weight_difference(const fs::path& a, const fs::path& b) {
  auto x = model::load_checkpoint(a), y = model::load_checkpoint(b);
  auto px = x.net->parameters(), py = y.net->parameters();
  EXPECT_EQ(px.size(), py.size());
  double diff = 0;
  for (std::size_t i = 0; i < px.size(); ++i) diff = std::max(diff, (px[i] - py[i]).abs().max().item<double>());
  auto bx = x.net->buffers(), by = y.net->buffers();
  for (std::size_t i = 0; i < bx.size(); ++i)
    diff = std::max(diff, (bx[i].to(torch::kFloat64) - by[i].to(torch::kFloat64)).abs().max().item<double>());
  return diff;
}

}  // namespace

TEST_F(Dist, TwoRanksOnLoopbackTrainAsOneProcessWithTheSameGlobalBatch) {
  const auto single = plain_single_run();
  // HISTOSCAN_CHECK_RANKS: after every step the ranks compare weights bit for bit.
  auto [c0, c1] =
      run_two(train_args(*dir_ / "ddp", kPlain), train_args(*dir_ / "ddp", kPlain), *dir_ / "r0.log", *dir_ / "r1.log");
  ASSERT_EQ(c0, 0) << test::read_text(*dir_ / "r0.log");
  ASSERT_EQ(c1, 0) << test::read_text(*dir_ / "r1.log");
  EXPECT_NE(test::read_text(*dir_ / "r0.log").find("2 ranks over Gloo"), std::string::npos);
  EXPECT_EQ(test::read_text(*dir_ / "r1.log"), "") << "rank 1 stays quiet";
  EXPECT_LT(max_weight_difference(single / "last.pt", *dir_ / "ddp/last.pt"), 1e-5);
  // Same history, validation gathered from both ranks' shares.
  auto h1 = test::lines_of(test::read_text(single / "history.csv")),
       h2 = test::lines_of(test::read_text(*dir_ / "ddp/history.csv"));
  ASSERT_EQ(h1.size(), 3u);
  ASSERT_EQ(h2.size(), 3u);
  for (std::size_t i = 1; i < 3; ++i)
    EXPECT_EQ(h1[i].substr(0, 30), h2[i].substr(0, 30)) << "epoch, loss, accuracy, val_loss to 4 places";
  // Only rank 0 wrote, into the one folder both were given.
  EXPECT_TRUE(fs::exists(*dir_ / "ddp/best.pt"));
  EXPECT_EQ(nlohmann::json::parse(test::read_text(*dir_ / "ddp/config.json")).at("world_size"), 2);
}

TEST_F(Dist, TwoRanksMixPairsAcrossTheirSharesAsOneProcess) {
  // --mixup blends row i of the global batch with row b-1-i, for most rows the other rank's:
  // each rank prepares the whole batch and trains on its share of the blend, so the weights
  // end as one process's (kPlain's settings, where the ranks match to 1e-5).
  auto mixed = kPlain;
  mixed.insert(mixed.end(), {"--mixup", "0.4"});
  ASSERT_TRUE(train_one_and_two("mix", [&](const fs::path& out) { return train_args(out, mixed); }));
  EXPECT_LT(max_weight_difference(*dir_ / "mix_single/last.pt", *dir_ / "mix_ddp/last.pt"), 1e-5);
  // 8 small SGD steps: the blend moves the weights 3.5e-4 from the plain run's (measured).
  EXPECT_GT(max_weight_difference(*dir_ / "mix_single/last.pt", plain_single_run() / "last.pt"), 1e-4)
      << "mixup trains otherwise";
  EXPECT_EQ(nlohmann::json::parse(test::read_text(*dir_ / "mix_ddp/config.json")).at("mixup"), 0.4);
}

TEST_F(Dist, TwoRanksSmoothTheirTargetsAsOneProcess) {
  // --label-smoothing trains towards y (1 - E) + E/2: a run with it moves otherwise than the
  // plain one, and two ranks still train as one process.
  auto smoothed = kPlain;
  smoothed.insert(smoothed.end(), {"--label-smoothing", "0.2"});
  ASSERT_TRUE(train_one_and_two("ls", [&](const fs::path& out) { return train_args(out, smoothed); }));
  EXPECT_LT(max_weight_difference(*dir_ / "ls_single/last.pt", *dir_ / "ls_ddp/last.pt"), 1e-5);
  EXPECT_GT(max_weight_difference(*dir_ / "ls_single/last.pt", plain_single_run() / "last.pt"), 1e-4)
      << "smoothed targets train otherwise (measured 2.4e-3)";
  EXPECT_EQ(nlohmann::json::parse(test::read_text(*dir_ / "ls_ddp/config.json")).at("label_smoothing"), 0.2);
}

TEST_F(Dist, ARankWithoutRowsInABatchStaysInStepWithTheOthers) {
  // Batches of 179 over 180 patches: the second step's one row is rank 0's, rank 1 has none.
  // It still makes that batch's augmentation draws, so the next epoch's shuffle, drawn from
  // the same rng, gives it the rows one process would: the weights end as one process's
  // (measured 3.7e-9 apart; 4.5e-4 when the empty share skipped its draws, measured with
  // --augment dihedral+colour; lr 0.1 to show it).
  auto args = [&](const fs::path& out) {
    auto a = train_args(out, kPlain);
    *(std::find(a.begin(), a.end(), "--batch") + 1) = "179";
    *(std::find(a.begin(), a.end(), "--epochs") + 1) = "3";
    *(std::find(a.begin(), a.end(), "--lr") + 1) = "0.1";
    a.insert(a.end(), {"--augment", "dihedral+colour+hed+shift=4"});
    return a;
  };
  ASSERT_TRUE(train_one_and_two("odd", args));
  EXPECT_LT(max_weight_difference(*dir_ / "odd_single/last.pt", *dir_ / "odd_ddp/last.pt"), 1e-5);
}

TEST_F(Dist, SyncBatchNormStepsAsOneProcessOverTheWholeBatch) {
  // seed-cnn's 13 BatchNorm layers amplify rounding differences from step to step (its
  // gradients at initialisation are ill-conditioned), so one step is compared: the whole
  // training set (180 patches) as the batch. With --sync-bn its statistics are the batch's,
  // as in one process; with BatchNorm per rank each rank normalises its own 90 patches.
  auto args = [&](const fs::path& out) {
    auto a = train_args(out, {"--epochs", "1", "--optimizer", "sgd", "--lr", "0.01"});
    std::replace(a.begin(), a.end(), std::string("49"), std::string("180"));
    return a;
  };
  auto one = args(*dir_ / "step_single");
  ASSERT_EQ(test::wait_exit(test::spawn_cli(one, *dir_ / "step.log")), 0) << test::read_text(*dir_ / "step.log");
  auto synced = args(*dir_ / "step_sync");
  synced.push_back("--sync-bn");
  auto [c0, c1] = run_two(synced, synced, *dir_ / "s0.log", *dir_ / "s1.log");
  ASSERT_EQ(c0, 0) << test::read_text(*dir_ / "s0.log");
  ASSERT_EQ(c1, 0) << test::read_text(*dir_ / "s1.log");
  auto per_rank = args(*dir_ / "step_per_rank");
  auto [p0, p1] = run_two(per_rank, per_rank, *dir_ / "p0.log", *dir_ / "p1.log");
  ASSERT_EQ(p0, 0) << test::read_text(*dir_ / "p0.log");
  // Measured: 1.5e-5 apart with --sync-bn, 1.5e-2 per rank.
  EXPECT_LT(max_weight_difference(*dir_ / "step_single/last.pt", *dir_ / "step_sync/last.pt"), 1e-4);
  EXPECT_GT(max_weight_difference(*dir_ / "step_single/last.pt", *dir_ / "step_per_rank/last.pt"), 1e-3);
}

TEST_F(Dist, BatchNormPerRankKeepsRanksIdentical) {
  // seed-cnn as it is: each rank normalises its own share; rank 0's running statistics are
  // broadcast before each step, so weights and buffers stay identical (checked every step).
  auto [c0, c1] = run_two(train_args(*dir_ / "bn", {"--epochs", "1"}), train_args(*dir_ / "bn", {"--epochs", "1"}),
                          *dir_ / "b0.log", *dir_ / "b1.log");
  EXPECT_EQ(c0, 0) << test::read_text(*dir_ / "b0.log");
  EXPECT_EQ(c1, 0) << test::read_text(*dir_ / "b1.log");
}

TEST_F(Dist, ARankThatFailsOrDiesEndsTheJobWithAMessage) {
  // Rank 1 cannot read its data: both stop before training, rank 0 saying why it stops.
  auto bad = train_args(*dir_ / "bad", {"--epochs", "1"});
  bad[1] = (*dir_ / "nothere").string();
  auto [c0, c1] = run_two(train_args(*dir_ / "bad", {"--epochs", "1"}), bad, *dir_ / "f0.log", *dir_ / "f1.log");
  EXPECT_EQ(c1, 2) << test::read_text(*dir_ / "f1.log");
  EXPECT_NE(test::read_text(*dir_ / "f1.log").find("nothere does not exist"), std::string::npos);
  EXPECT_EQ(c0, 2) << test::read_text(*dir_ / "f0.log");
  EXPECT_NE(test::read_text(*dir_ / "f0.log").find("another rank stopped before training"), std::string::npos)
      << test::read_text(*dir_ / "f0.log");

  // Rank 1 is killed while training: rank 0 fails with a message, well within --dist-timeout.
  int port = dist::free_loopback_port();
  auto args = train_args(*dir_ / "killed", {"--epochs", "50", "--dist-timeout", "60"});
  pid_t a = test::spawn_cli(args, *dir_ / "k0.log", rank_env(0, port));
  pid_t b = test::spawn_cli(args, *dir_ / "k1.log", rank_env(1, port));
  for (int i = 0; i < 600 && !fs::exists(*dir_ / "killed/history.csv"); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_TRUE(fs::exists(*dir_ / "killed/history.csv")) << test::read_text(*dir_ / "k0.log");
  kill(b, SIGKILL);
  auto t0 = std::chrono::steady_clock::now();
  int code = test::wait_exit(a);
  double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  test::wait_exit(b);
  std::string log = test::read_text(*dir_ / "k0.log");
  EXPECT_EQ(code, 1) << log;
  EXPECT_NE(log.find("histoscan: failed: rank 0 of 2"), std::string::npos) << log;
  EXPECT_LT(waited, 60.0) << log;
}

TEST_F(Dist, LaunchVariablesAreChecked) {
  auto r = test::run_cli("train " + test::quote(*dir_ / "data") + " --out " + test::quote(*dir_ / "x") +
                         " --dist-url tcp://127.0.0.1:1");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("--dist-url tcp://127.0.0.1:1 needs RANK and WORLD_SIZE"), std::string::npos) << r.output;
  r = test::run_cli("train " + test::quote(*dir_ / "data") + " --out " + test::quote(*dir_ / "x") + " --dist-timeout 0");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("--dist-timeout 0 must be a positive number"), std::string::npos) << r.output;
  r = test::run_cli("train " + test::quote(*dir_ / "data") + " --out " + test::quote(*dir_ / "x") +
                    " --model seed-cnn --model-option dropuot=0");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.output.find("model option dropuot=0: seed-cnn takes dropout"), std::string::npos) << r.output;
}

TEST(SyncBatchNorm, OneRankComputesWhatBatchNormComputes) {
  TempDir dir;
  dist::Launch launch;
  launch.store = "file://" + (dir / "store").string();
  dist::Group group(launch, 30);
  torch::manual_seed(3);
  torch::nn::Sequential plain(torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 4, 3)), torch::nn::BatchNorm2d(4));
  torch::nn::Sequential twin(torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 4, 3)), torch::nn::BatchNorm2d(4));
  {
    torch::NoGradGuard no_grad;
    auto a = plain->parameters(), b = twin->parameters();
    for (std::size_t i = 0; i < a.size(); ++i) b[i].copy_(a[i] + (i == 2 ? 0.5 : 0.0));  // a BatchNorm weight away from 1
    for (std::size_t i = 0; i < a.size(); ++i) a[i].copy_(b[i]);
  }
  auto synced = dist::with_sync_batchnorm(twin, group);
  plain->train(), synced->train();
  auto x = torch::randn({5, 3, 8, 8});
  auto ya = plain->forward(x), yb = synced->forward(x);
  EXPECT_LT((ya - yb).abs().max().item<double>(), 1e-5);
  auto w = torch::randn_like(ya);
  (ya * w).sum().backward();
  (yb * w).sum().backward();
  auto pa = plain->parameters(), pb = synced->parameters();
  ASSERT_EQ(pa.size(), pb.size());
  for (std::size_t i = 0; i < pa.size(); ++i)
    EXPECT_LT((pa[i].grad() - pb[i].grad()).abs().max().item<double>(), 1e-4 * (1 + pa[i].grad().abs().max().item<double>()))
        << i;
  auto ba = plain->buffers(), bb = synced->buffers();
  for (std::size_t i = 0; i < ba.size(); ++i)
    EXPECT_LT((ba[i].to(torch::kFloat64) - bb[i].to(torch::kFloat64)).abs().max().item<double>(), 1e-6) << i;
}

TEST(SyncBatchNorm, TwoRanksComputeWhatBatchNormComputesOnTheWholeBatch) {
  TempDir dir;
  torch::manual_seed(4);
  auto make = [] {
    torch::manual_seed(5);
    return torch::nn::Sequential(torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 4, 3)), torch::nn::BatchNorm2d(4),
                                 torch::nn::Conv2d(torch::nn::Conv2dOptions(4, 2, 3)));
  };
  auto x = torch::randn({7, 3, 8, 8});
  auto w = torch::randn({7, 2, 4, 4});
  auto whole = make();
  whole->train();
  (whole->forward(x) * w).sum().backward();
  std::vector<std::vector<torch::Tensor>> grads(2);
  // Built here, not in the threads: seeding and drawing from the one global generator in
  // two threads at once would give the ranks different weights.
  std::vector<torch::nn::Sequential> nets{make(), make()};
  std::vector<std::thread> ranks;
  ranks.reserve(2);
  for (int r = 0; r < 2; ++r)
    ranks.emplace_back([&, r] {
      dist::Launch launch;
      launch.rank = r;
      launch.world_size = 2;
      launch.store = "file://" + (dir / "store").string();
      dist::Group group(launch, 30);
      auto net = dist::with_sync_batchnorm(nets[r], group);
      net->train();
      int64_t b = r == 0 ? 4 : 3, o = r == 0 ? 0 : 4;
      (net->forward(x.narrow(0, o, b)) * w.narrow(0, o, b)).sum().backward();
      for (auto& p : net->parameters()) grads[r].push_back(p.grad().clone());
    });
  for (auto& t : ranks) t.join();
  auto pw = whole->parameters();
  for (std::size_t i = 0; i < pw.size(); ++i)
    EXPECT_LT((pw[i].grad() - grads[0][i] - grads[1][i]).abs().max().item<double>(),
              1e-4 * (1 + pw[i].grad().abs().max().item<double>()))
        << "parameter " << i;
}

// A cohort across 2 ranks on loopback: each takes the next slide from the store's counter, and
// rank 0's cohort.csv is the one a single process writes (but for each slide's seconds).
TEST_F(Dist, TwoRanksScanACohortAsOneProcess) {
  auto r = test::run_cli("train " + test::quote(*dir_ / "data") + " --out " + test::quote(*dir_ / "scanmodel") +
                         " --epochs 1 --per-class 40 --batch 32 --seed 5 --threads 1 --no-progress --model seed-cnn --no-amp");
  ASSERT_EQ(r.code, 0) << r.output;
  const fs::path slides = *dir_ / "slides";
  fs::create_directories(slides);
  for (int i = 0; i < 6; ++i) {
    r = test::run_cli("synth-slide " + test::quote(slides / ("s" + std::to_string(i) + ".tif")) + " --cols " +
                      std::to_string(4 + i) + " --rows 4 --tumour 1,1,2,2 --seed " + std::to_string(i + 1));
    ASSERT_EQ(r.code, 0) << r.output;
  }
  auto args = [&](const fs::path& out) {
    // Stride 96: a ninth of the tiles of the default 32, which this test does not need (it
    // runs under AddressSanitizer too).
    return std::vector<std::string>{"scan",
                                    (*dir_ / "scanmodel/best.pt").string(),
                                    slides.string(),
                                    "--out",
                                    out.string(),
                                    "--threads",
                                    "1",
                                    "--no-progress",
                                    "--stride",
                                    "96"};
  };
  ASSERT_EQ(test::wait_exit(test::spawn_cli(args(*dir_ / "cohort1"), *dir_ / "c1.log")), 0) << test::read_text(*dir_ / "c1.log");
  auto [c0, c1] = run_two(args(*dir_ / "cohort2"), args(*dir_ / "cohort2"), *dir_ / "c20.log", *dir_ / "c21.log");
  ASSERT_EQ(c0, 0) << test::read_text(*dir_ / "c20.log");
  ASSERT_EQ(c1, 0) << test::read_text(*dir_ / "c21.log");
  auto one = test::csv_without_column(*dir_ / "cohort1/cohort.csv", 8),
       two = test::csv_without_column(*dir_ / "cohort2/cohort.csv", 8);
  ASSERT_EQ(one.size(), 7u);
  EXPECT_EQ(one, two);
  // Both ranks scanned: each says how many it took, and together they took all six.
  std::string log0 = test::read_text(*dir_ / "c20.log"), log1 = test::read_text(*dir_ / "c21.log");
  auto taken = [](const std::string& log) {
    auto at = log.find(": scanned ");
    return at == std::string::npos ? -1 : std::stoi(log.substr(at + 10));
  };
  EXPECT_GE(taken(log0), 1) << log0;
  EXPECT_GE(taken(log1), 1) << log1;
  EXPECT_EQ(taken(log0) + taken(log1), 6) << log0 << log1;
}
