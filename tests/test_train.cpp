// The training settings (train/config) and schedules (train/schedule) as plain functions, each
// against what the loop relies on; the loop itself is tested end to end in test_model and test_cli.
#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "histoscan/train/config.h"
#include "histoscan/train/schedule.h"
#include "histoscan/util/error.h"

using namespace histoscan;
using namespace histoscan::test;

TEST(Schedule, CosineWarmsUpLinearlyThenFallsAlongAHalfCosineToZeroAtTheLastStep) {
  const double lr = 1e-3, warmup = 10, total = 110;
  EXPECT_DOUBLE_EQ(train::cosine_lr(lr, 0, warmup, total), lr / 10);  // the first step already moves
  EXPECT_DOUBLE_EQ(train::cosine_lr(lr, 4, warmup, total), lr / 2);
  EXPECT_DOUBLE_EQ(train::cosine_lr(lr, 10, warmup, total), lr);  // the peak, where the fall starts
  EXPECT_NEAR(train::cosine_lr(lr, 60, warmup, total), lr / 2, 1e-15);
  EXPECT_NEAR(train::cosine_lr(lr, 110, warmup, total), 0, 1e-15);
  double before = lr;
  for (double t = 11; t < total; ++t) {
    const double now = train::cosine_lr(lr, t, warmup, total);
    EXPECT_LT(now, before) << "step " << t;
    before = now;
  }
  // No warm-up: the run starts at the full rate (the default recipe).
  EXPECT_DOUBLE_EQ(train::cosine_lr(lr, 0, 0, total), lr);
}

TEST(Schedule, PlateauCutsTheRateAfterPatienceEpochsWithoutAnImprovementBeyondMinDelta) {
  const train::Plateau plateau{2, 0.1, 1e-4};
  double best = INFINITY;
  int since = 0;
  EXPECT_EQ(train::plateau_step(plateau, 0.50, best, since), 1);
  EXPECT_EQ(best, 0.50);
  EXPECT_EQ(train::plateau_step(plateau, 0.49995, best, since), 1);  // within min_delta: not an improvement
  EXPECT_EQ(best, 0.50);
  EXPECT_EQ(since, 1);
  EXPECT_EQ(train::plateau_step(plateau, 0.6, best, since), 0.1);  // the second epoch without one: cut
  EXPECT_EQ(since, 0);                                             // and the count starts again
  EXPECT_EQ(train::plateau_step(plateau, 0.7, best, since), 1);
  EXPECT_EQ(train::plateau_step(plateau, 0.4, best, since), 1);  // an improvement resets the count
  EXPECT_EQ(since, 0);
  EXPECT_EQ(best, 0.4);
}

TEST(Schedule, TheWeightAverageMovesMoreWhileItHoldsLittle) {
  EXPECT_DOUBLE_EQ(train::ema_decay(0.999, 0), 0.1);  // (1 + 0) / (10 + 0)
  EXPECT_DOUBLE_EQ(train::ema_decay(0.999, 10), 11.0 / 20.0);
  EXPECT_DOUBLE_EQ(train::ema_decay(0.999, 100000), 0.999);  // then the decay given
  EXPECT_DOUBLE_EQ(train::ema_decay(0.5, 20), 0.5);
}

TEST(TrainConfig, JsonKeepsEverySettingAndOlderRunsResumeAsTheyStarted) {
  train::TrainConfig c = train::recipe_config("seed");
  c.model_options = {{"dropout", 0.1}};
  c.optimizer = "sgd";
  c.momentum = 0.8;
  c.lr = 3e-4;
  c.batch = 64;
  c.epochs = 9;
  c.early_stopping_patience = 4;
  c.lr_patience = 2;
  c.lr_factor = 0.5;
  c.seed = 1234567890123ULL;
  c.device = "cpu";
  c.augment = "dihedral";
  c.sync_bn = true;
  c.amp = true;
  c.memory_format = "nchw";
  c.schedule = "cosine";
  c.warmup_epochs = 1.5;
  c.ema = 0.99;
  c.weight_decay = 0.05;
  c.mixup = 0.3;
  c.label_smoothing = 0.1;
  c.max_minutes = 42;
  const nlohmann::json j = train::to_json(c);
  EXPECT_EQ(j["patience"], 4);  // config.json's key, the flag's name
  EXPECT_EQ(train::to_json(train::config_from_json(j)), j);

  // A config.json from before the optimizer, schedules, weight average, layouts and budgets.
  nlohmann::json old = j;
  for (const char* key : {"optimizer", "momentum", "sync_bn", "amp", "memory_format", "recipe", "max_minutes", "schedule",
                          "warmup_epochs", "ema", "weight_decay", "mixup", "label_smoothing"})
    old.erase(key);
  const auto resumed = train::config_from_json(old);
  EXPECT_EQ(resumed.optimizer, "adam");
  EXPECT_EQ(resumed.schedule, "plateau");
  EXPECT_EQ(resumed.ema, 0);
  EXPECT_EQ(resumed.weight_decay, 0);
  EXPECT_EQ(resumed.mixup, 0);
  EXPECT_EQ(resumed.label_smoothing, 0);
  EXPECT_FALSE(resumed.amp);
  EXPECT_EQ(resumed.lr, 3e-4);
  EXPECT_THROW(train::config_from_json(nlohmann::json::object()), nlohmann::json::exception);
}

TEST(TrainConfig, ARecipeFillsOnlyTheSettingsNotGiven) {
  train::TrainConfig given = train::recipe_config("default");
  given.recipe = "seed";
  given.epochs = 2;  // given
  given.lr = 5e-4;   // given
  given.seed = 99;   // not a recipe's setting: always the run's own
  given.device = "cpu";
  const std::set<std::string> flags = {"epochs", "lr"};
  const auto c = train::apply_recipe(given, [&](const std::string& key) { return flags.count(key) > 0; });
  const auto seed = train::recipe_config("seed");
  EXPECT_EQ(c.epochs, 2);
  EXPECT_EQ(c.lr, 5e-4);
  EXPECT_EQ(c.seed, 99U);
  EXPECT_EQ(c.device, "cpu");
  EXPECT_EQ(c.model, seed.model);
  EXPECT_EQ(c.augment, seed.augment);
  EXPECT_EQ(c.schedule, seed.schedule);
  EXPECT_EQ(c.early_stopping_patience, seed.early_stopping_patience);
  EXPECT_EQ(c.recipe, "seed");
  given.recipe = "nonesuch";
  EXPECT_THROW(train::apply_recipe(given, [](const std::string&) { return false; }), InputError);
}

TEST(TrainConfig, EveryRecipeSettingIsATrainFlag) {
  const auto help = run_cli("train --help");
  ASSERT_EQ(help.code, 0) << help.output;
  for (std::string key : train::recipe_keys()) {
    for (auto& ch : key)
      if (ch == '_') ch = '-';
    EXPECT_NE(help.output.find("--" + key + " "), std::string::npos) << key << "\n" << help.output;
  }
}

TEST(TrainConfig, NamesAreCheckedOnceWithTheFlagInTheMessage) {
  train::TrainConfig c;
  c.schedule = "linear";
  try {
    train::schedule_of(c);
    FAIL() << "no error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("--schedule linear: expected plateau or cosine"), std::string::npos) << e.what();
  }
  c.optimizer = "rmsprop";
  EXPECT_THROW(train::optimizer_of(c), InputError);
  EXPECT_THROW(train::validate(c), InputError);
  c = train::TrainConfig{};
  EXPECT_EQ(train::schedule_of(c), train::Schedule::plateau);
  EXPECT_EQ(train::optimizer_of(c), train::Optimizer::adam);
}
