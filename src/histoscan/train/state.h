#pragma once
// What a training run carries from step to step, and its resume.pt: enough to continue an
// interrupted run so that it ends exactly where an uninterrupted one would.
#include <cstdint>
#include <filesystem>
#include <limits>
#include <random>
#include <vector>

#include <torch/nn/modules/container/sequential.h>
#include <torch/optim/adam.h>

#include "histoscan/train/trainer.h"

namespace histoscan::train {

struct LoopState {
  int epoch = 1;                    // the epoch in progress, 1-based
  std::int64_t step = 0;            // the next step of that epoch; 0: the epoch has not started
  std::vector<std::int64_t> order;  // the epoch's permutation of the training rows (step > 0)
  double loss_sum = 0;              // running sums of the epoch so far
  std::int64_t correct = 0, seen = 0;
  double lr = 0;
  double best_loss = std::numeric_limits<double>::infinity();     // early stopping and best.pt
  double plateau_best = std::numeric_limits<double>::infinity();  // reduce-LR-on-plateau
  int since_best = 0, since_plateau_best = 0, best_epoch = 0;
  double wall_seconds = 0;           // wall-clock time of the finished epochs (training and validation)
  double longest_epoch_seconds = 0;  // the longest of them, to judge whether another fits --max-minutes
  bool finished = false;
  std::vector<EpochRecord> history;
  std::vector<torch::Tensor> best_weights;  // parameters then buffers of the best epoch
  std::vector<torch::Tensor> ema_weights;   // --ema: the averaged parameters then buffers
  std::int64_t ema_updates = 0;
};

// Writes net, optimizer, loop state, `rng` and LibTorch's CPU generator to `path` atomically.
void save_state(const std::filesystem::path& path, const torch::nn::Sequential& net, torch::optim::Optimizer& opt,
                const LoopState& state, const std::mt19937_64& rng);

// Restores what save_state wrote into net, opt, state, rng and LibTorch's CPU generator.
// Throws InputError naming the file when it is missing, damaged or of another network.
void load_state(const std::filesystem::path& path, torch::nn::Sequential& net, torch::optim::Optimizer& opt, LoopState& state,
                std::mt19937_64& rng);

}  // namespace histoscan::train
