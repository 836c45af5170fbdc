#pragma once
// The epoch loop: Adam (or SGD with momentum), binary cross-entropy on logits, per-image standardization and
// random flips, early stopping and reduce-LR-on-plateau on val_loss, checkpoints and history.
#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "histoscan/data/store.h"
#include "histoscan/train/config.h"

namespace histoscan::dist {
class Group;
}

namespace histoscan::train {

namespace fs = std::filesystem;

struct EpochRecord {
  int epoch = 0;
  double loss = 0, accuracy = 0, val_loss = 0, val_accuracy = 0, val_auc = 0, lr = 0, seconds = 0;
};

struct TrainResult {
  std::vector<EpochRecord> history;
  int best_epoch = 0;
  bool stopped_early = false;
};

// Trains on `train`, validating on `valid` after each epoch, and writes to run_dir:
// last.pt (every epoch), best.pt (lowest val_loss), history.csv (every epoch) and
// resume.pt (everything a resumed run needs: weights, optimizer, schedules, random
// generators), each atomically. The final weights (and best.pt) are those of the best
// epoch. `meta` is stored in every checkpoint, with model, options, preprocessing,
// threshold, epoch added. With resume, continues from run_dir/resume.pt (the same data and
// config must be given): the result equals an uninterrupted run's.
// Throws Interrupted after saving resume.pt and last.pt when request_stop() was called.
//
// With `group` (data-parallel training, one call per rank, each with the same data and
// config): every step's batch of config.batch patches (the global batch) is split into
// near-equal shares, one per rank, augmented as one process would augment the whole batch;
// gradients are averaged over the ranks, weighted by share, in buckets of up to 25 MB, so
// the step equals one process's on the whole batch. BatchNorm normalises each rank's share
// (as PyTorch's DDP) and its running statistics are rank 0's, broadcast before each step.
// Validation is split over the ranks and gathered, so every rank computes the same metrics.
// Only rank 0 writes to run_dir; all ranks read it to resume (a folder they share).
//
// With `targets` (one per training patch, in [0, 1]; distillation: a blend of each label and a
// teacher's probability) the loss trains towards them instead of the labels; --mixup blends
// and --label-smoothing moves them as they would the labels. Training accuracy and validation
// still count the labels. Throws std::invalid_argument for a count other than train.size() or
// a value outside [0, 1].
TrainResult train_model(const data::PatchStore& train, const data::PatchStore& valid, const TrainConfig& config,
                        const fs::path& run_dir, nlohmann::json meta, bool resume = false, dist::Group* group = nullptr,
                        const std::vector<float>& targets = {});

// Asks a running train_model to stop after its current step (async-signal-safe: SIGINT).
void request_stop();

// Withdraws a request_stop() (a process that trains again after an interrupted run: Python).
void clear_stop_request();

// True when run_dir holds a resume.pt of an unfinished run.
bool can_resume(const fs::path& run_dir);

// One line per epoch as Keras prints it: "loss: 0.4302 - accuracy: 0.8028 - val_loss: ...".
std::string format_epoch(const EpochRecord& r);

}  // namespace histoscan::train
