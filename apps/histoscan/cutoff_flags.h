#pragma once
// The flags that choose an operating point, shared by `evaluate` and `metrics`.
#include <cmath>
#include <cstdint>
#include <limits>

#include <CLI/CLI.hpp>

#include "histoscan/eval/analysis.h"

namespace histoscan::cli {

struct CutoffFlags {
  double threshold = std::numeric_limits<double>::quiet_NaN();
  double target_sensitivity = std::numeric_limits<double>::quiet_NaN();
  double target_specificity = std::numeric_limits<double>::quiet_NaN();
  bool youden = false;
  int bootstrap = 1000;
  std::uint64_t seed = 13;

  // The rule the user asked for; false when none (the checkpoint's threshold then applies).
  bool request(eval::CutoffRequest& out) const {
    using eval::CutoffRule;
    if (!std::isnan(threshold)) out = {CutoffRule::threshold, threshold};
    else if (!std::isnan(target_sensitivity)) out = {CutoffRule::target_sensitivity, target_sensitivity};
    else if (!std::isnan(target_specificity)) out = {CutoffRule::target_specificity, target_specificity};
    else if (youden) out = {CutoffRule::youden, 0.0};
    else return false;
    return true;
  }
};

inline void add_cutoff_flags(CLI::App* cmd, CutoffFlags& f) {
  auto* t =
      cmd->add_option("--threshold", f.threshold, "operating point: this probability cut-off (default: the checkpoint's, 0.5)");
  auto* se = cmd->add_option("--target-sensitivity", f.target_sensitivity,
                             "operating point: the highest cut-off whose sensitivity reaches S");
  auto* sp = cmd->add_option("--target-specificity", f.target_specificity,
                             "operating point: the lowest cut-off whose specificity reaches S");
  auto* y = cmd->add_flag("--youden", f.youden, "operating point: the cut-off maximizing sensitivity + specificity - 1");
  t->excludes(se)->excludes(sp)->excludes(y);
  se->excludes(sp)->excludes(y);
  sp->excludes(y);
  cmd->add_option("--bootstrap", f.bootstrap, "bootstrap resamples for the 95% intervals (0: none)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--seed", f.seed, "seed of the bootstrap")->capture_default_str();
}

}  // namespace histoscan::cli
