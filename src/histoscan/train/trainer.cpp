#include "histoscan/train/trainer.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <memory>
#include <mutex>
#include <numeric>
#include <ostream>
#include <random>
#include <stdexcept>
#include <tuple>

#include <torch/torch.h>

#include "histoscan/dist/data_parallel.h"
#include "histoscan/dist/dist.h"
#include "histoscan/dist/sync_bn.h"
#include "histoscan/eval/metrics.h"
#include "histoscan/model/checkpoint.h"
#include "histoscan/model/precision.h"
#include "histoscan/model/preprocess.h"
#include "histoscan/model/registry.h"
#include "histoscan/model/symmetry.h"
#include "histoscan/predict/predictor.h"
#include "histoscan/train/adam.h"
#include "histoscan/train/schedule.h"
#include "histoscan/train/state.h"
#include "histoscan/train/transforms.h"
#include "histoscan/util/atomic_file.h"
#include "histoscan/util/error.h"
#include "histoscan/util/log.h"
#include "histoscan/util/progress.h"

namespace histoscan::train {

std::string format_epoch(const EpochRecord& r) {
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "loss: %.4f - accuracy: %.4f - val_loss: %.4f - val_accuracy: %.4f - val_auc: %.4f - lr: %.1e - %s", r.loss,
                r.accuracy, r.val_loss, r.val_accuracy, r.val_auc, r.lr, format_seconds(r.seconds).c_str());
  return buf;
}

namespace {

void write_history(const fs::path& path, const std::vector<EpochRecord>& history) {
  write_file_atomic(path, [&](std::ostream& f) {
    f << "epoch,loss,accuracy,val_loss,val_accuracy,val_auc,lr,seconds\n";
    char buf[256];
    for (const auto& r : history) {
      std::snprintf(buf, sizeof buf, "%d,%.6f,%.6f,%.6f,%.6f,%.6f,%.6g,%.3f\n", r.epoch, r.loss, r.accuracy, r.val_loss,
                    r.val_accuracy, r.val_auc, r.lr, r.seconds);
      f << buf;
    }
  });
}

void set_lr(torch::optim::Optimizer& opt, double lr) {
  for (auto& group : opt.param_groups()) group.options().set_lr(lr);
}

// A copy of every parameter and buffer, to restore the best epoch's weights at the end.
std::vector<torch::Tensor> snapshot(const torch::nn::Sequential& net) {
  std::vector<torch::Tensor> out;
  for (const auto& p : net->parameters()) out.push_back(p.detach().clone());
  for (const auto& b : net->buffers()) out.push_back(b.detach().clone());
  return out;
}

void restore(torch::nn::Sequential& net, const std::vector<torch::Tensor>& saved) {
  torch::NoGradGuard guard;
  std::size_t k = 0;
  for (auto& p : net->parameters()) p.copy_(saved[k++]);
  for (auto& b : net->buffers()) b.copy_(saved[k++]);
}

}  // namespace

namespace {

std::atomic<bool> g_stop{false};

// One training run: the data, the network, the optimizer and the loop's state.
class Loop {
 public:
  Loop(const data::PatchStore& train, const data::PatchStore& valid, const TrainConfig& config, const fs::path& run_dir,
       nlohmann::json meta, dist::Group* group, const std::vector<float>& targets)
      : config_(config),
        run_dir_(run_dir),
        meta_(std::move(meta)),
        valid_(valid),
        group_(group),
        writes_(!group || group->rank() == 0),
        rng_(config.seed),
        device_(predict::resolve_device(config.device)),
        n_(static_cast<int64_t>(train.size())),
        steps_((n_ + config.batch - 1) / config.batch),
        label_values_(train.labels.begin(), train.labels.end()),
        target_values_(targets) {
    torch::manual_seed(config.seed);
    net_ = model::make_model(config.model, config.model_options);
    if (group_ && config.sync_bn) net_ = dist::with_sync_batchnorm(net_, *group_);
    // Float32 training on the CPU stays in NCHW memory (--memory-format auto): in LibTorch
    // 1.13, BatchNorm's channels-last kernel sums 96x96 maps less exactly (1e-3 against
    // float64 where NCHW is within 1e-7), and seed-cnn at initialisation amplifies that into
    // gradients 59% off float64's (normwise over all parameters; NCHW float32: 0.17%). Under
    // --amp the bfloat16 convolutions' error is larger still and the same with either layout
    // (seed-cnn 79% and 77%, resnet 15% and 15%), so there channels-last's speed costs nothing.
    // Inference, where BatchNorm uses stored statistics, runs channels-last (same
    // probabilities within 1e-7, faster). On a GPU training runs channels-last: cuDNN's NHWC
    // kernels, and tensor cores under --amp.
    net_->to(device_);
    if (channels_last_) model::use_channels_last(*net_);
    if (model::ties_dihedral(config.model_options)) {
      tying_ = std::make_unique<model::DihedralTying>(*net_);
      tying_->tie_initial_weights();  // a resumed run loads its (tied) weights over these
    }
    model::warn_if_amp_is_slow(device_, config.amp);
    if (optimizer_of(config) == Optimizer::sgd)
      opt_ =
          std::make_unique<torch::optim::SGD>(net_->parameters(), torch::optim::SGDOptions(config.lr).momentum(config.momentum));
    else opt_ = std::make_unique<MultiTensorAdam>(net_->parameters(), torch::optim::AdamOptions(config.lr));
    images_ = torch::from_blob(const_cast<std::uint8_t*>(train.pixels.data()), {n_, 96, 96, 3}, torch::kUInt8);
    labels_ = torch::from_blob(label_values_.data(), {n_}, torch::kFloat32);
    if (!target_values_.empty()) targets_ = torch::from_blob(target_values_.data(), {n_}, torch::kFloat32);
    if (device_.is_cuda()) to_gpu();
    state_.lr = config.lr;
    if (config.ema > 0) state_.ema_weights = snapshot(net_);
    meta_["model"] = config.model;
    meta_["model_options"] = config.model_options;
    meta_["preprocessing"] = {{"input", "RGB uint8 96x96 scaled to [0,1]"}, {"standardize", "per-image"}};
    meta_["threshold"] = 0.5;
    meta_["precision"] = config.amp ? "bfloat16 autocast" : "float32";
    meta_["memory_format"] = channels_last_ ? "channels-last" : "nchw";  // as trained (auto resolved)
    if (config.ema > 0) meta_["weights"] = "exponential moving average, decay " + format_number(config.ema);
    meta_["versions"] = model::version_info();
    if (group_) {
      meta_["distributed"] = {{"world_size", group_->size()}, {"backend", "gloo"}};
      // Every rank seeded the same, so this changes nothing unless a rank differs: as DDP,
      // rank 0's initial weights are everyone's.
      dist::broadcast_weights(net_, *group_);
      reducer_ = std::make_unique<dist::GradientReducer>(net_);
    }
  }

  TrainResult run(bool resume) {
    if (resume) {
      load_state(run_dir_ / "resume.pt", net_, *opt_, state_, rng_);
      if (state_.finished)
        throw InputError("--resume " + run_dir_.string() + ": this run finished (" + std::to_string(state_.history.size()) +
                         " epochs); nothing to resume");
      set_lr(*opt_, state_.lr);
      if (config_.ema > 0 && state_.ema_weights.size() != net_->parameters().size() + net_->buffers().size())
        throw InputError((run_dir_ / "resume.pt").string() +
                         " holds no weight average for --ema; start a new run instead of --resume");
      log::info("resuming at epoch " + std::to_string(state_.epoch) + ", step " + std::to_string(state_.step) + " of " +
                std::to_string(steps_));
    }
    for (; state_.epoch <= config_.epochs; ++state_.epoch) {
      auto t0 = std::chrono::steady_clock::now();
      train_steps();
      const double train_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      use_averaged_weights();
      EpochRecord r = validate(train_s);
      const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      state_.wall_seconds += wall;
      state_.longest_epoch_seconds = std::max(state_.longest_epoch_seconds, wall);
      bool stop = end_epoch(r);  // back on the raw weights from its save of resume.pt on
      state_.step = 0;
      if (stop) break;
    }
    if (!state_.best_weights.empty()) {
      restore(net_, state_.best_weights);
      log::info("restored the weights of epoch " + std::to_string(state_.best_epoch) + " (lowest val_loss)");
    }
    TrainResult result;
    result.history = state_.history;
    result.best_epoch = state_.best_epoch;
    result.stopped_early = state_.history.size() < static_cast<std::size_t>(config_.epochs);
    return result;
  }

 private:
  void train_steps() {
    const int epoch = state_.epoch;
    if (config_.progress) log::info("Epoch " + std::to_string(epoch) + "/" + std::to_string(config_.epochs));
    if (state_.step == 0) {
      state_.order.resize(static_cast<std::size_t>(n_));
      std::iota(state_.order.begin(), state_.order.end(), 0);
      std::shuffle(state_.order.begin(), state_.order.end(), rng_);
      state_.loss_sum = 0;
      state_.correct = state_.seen = 0;
    }
    auto perm = torch::from_blob(state_.order.data(), {n_}, torch::kInt64);
    if (images_.device() != perm.device()) perm = perm.to(images_.device());
    net_->train();
    ProgressBar bar(steps_);
    bar_ = &bar;
    bool stop = false;
    for (; state_.step < steps_; ++state_.step) {
      if (group_ ? stop : g_stop.load()) stop_here();
      int64_t start = state_.step * config_.batch, b = std::min<int64_t>(config_.batch, n_ - start);
      if (schedule_ == Schedule::cosine) set_lr(*opt_, state_.lr = scheduled_lr());
      if (!group_) {
        auto [x, target, y] = prepare_rows(perm, start, 0, b, b);
        auto logits = logits_of(x);
        auto loss = torch::binary_cross_entropy_with_logits(logits, target);
        opt_->zero_grad();
        loss.backward();
        tie_gradients();
        decay_weights();
        opt_->step();
        tie_weights();
        torch::NoGradGuard no_grad;
        update_average();
        auto correct = ((logits >= 0).to(torch::kFloat32) == y).sum();
        if (pending_n_ == 0) pending_first_ = state_.step;
        pending_.select(0, pending_n_++).copy_(torch::stack({loss.detach().to(torch::kFloat64), correct.to(torch::kFloat64)}));
        if (pending_n_ == pending_.size(0)) flush_steps();
      } else {
        double l = 0;
        int64_t correct = 0;
        std::tie(l, correct, stop) = distributed_step(perm, start, b);
        update_average();
        count_step(state_.step, l, correct);
      }
    }
    flush_steps();
    bar.finish();
    bar_ = nullptr;
  }

  // --schedule cosine: the learning rate of the step about to run (state_.epoch, state_.step).
  double scheduled_lr() const {
    const double t = double(state_.epoch - 1) * double(steps_) + double(state_.step);
    return cosine_lr(config_.lr, t, config_.warmup_epochs * double(steps_), double(config_.epochs) * double(steps_));
  }

  // symmetry=d4: the gradients projected onto the tied weights before the step, so Adam's
  // moments and steps are equal along each orbit; after it the weights and BatchNorm's running
  // statistics (which each orientation's batches moved apart) projected again.
  void tie_gradients() {
    if (tying_) tying_->project_gradients();
  }
  void tie_weights() {
    if (tying_) tying_->project_weights();
  }

  // --weight-decay: decoupled decay before the optimizer's step, as torch.optim.AdamW does it:
  // every weight of two or more dimensions times 1 - lr * decay, at the step's scheduled lr.
  // Biases and BatchNorm's scales and shifts (one dimension) keep their values.
  void decay_weights() {
    if (config_.weight_decay <= 0) return;
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> weights;
    for (const auto& p : net_->parameters())
      if (p.dim() > 1) weights.push_back(p.detach());
    at::_foreach_mul_(weights, 1.0 - state_.lr * config_.weight_decay);
  }

  // --ema: after each step, average = decay * average + (1 - decay) * weights for the
  // parameters and BatchNorm's running statistics alike (statistics copied from the trained
  // network would not match the averaged weights); integer buffers (batch counts) are copied.
  void update_average() {
    if (config_.ema <= 0) return;
    torch::NoGradGuard no_grad;
    const double decay = ema_decay(config_.ema, state_.ema_updates++);
    std::vector<torch::Tensor> avg, now;
    const auto params = net_->parameters();
    for (std::size_t k = 0; k < params.size(); ++k) avg.push_back(state_.ema_weights[k]), now.push_back(params[k].detach());
    at::_foreach_mul_(avg, decay);
    at::_foreach_add_(avg, now, 1 - decay);
    std::size_t k = params.size();
    for (const auto& b : net_->buffers()) {
      auto& avg_b = state_.ema_weights[k++];
      if (b.is_floating_point()) avg_b.mul_(decay).add_(b, 1 - decay);
      else avg_b.copy_(b);
    }
  }

  // For validation and the checkpoints of an epoch: the averaged weights in the network
  // (with --ema), the raw ones kept aside until use_training_weights.
  void use_averaged_weights() {
    if (config_.ema <= 0) return;
    raw_weights_ = snapshot(net_);
    restore(net_, state_.ema_weights);
  }
  void use_training_weights() {
    if (raw_weights_.empty()) return;
    restore(net_, raw_weights_);
    raw_weights_.clear();
  }

  // The training set on the GPU, where it fits: a step then gathers its batch there instead
  // of copying it from host memory. Where it does not fit, batches are copied as on the CPU.
  void to_gpu() {
    try {
      images_ = images_.to(device_);
      labels_ = labels_.to(device_);
      if (targets_.defined()) targets_ = targets_.to(device_);
      log::info("training set on " + device_.str() + ": " + format_number(double(images_.nbytes()) / 1e9) + " GB");
    } catch (const c10::Error&) {
      images_ = images_.to(torch::kCPU);
      labels_ = labels_.to(torch::kCPU);
      if (targets_.defined()) targets_ = targets_.to(torch::kCPU);
      log::info("the training set does not fit on " + device_.str() + "; each batch is copied from host memory");
    }
    // cuDNN times its algorithms for each new shape once and keeps the fastest (a step's shapes repeat).
    at::globalContext().setBenchmarkCuDNN(true);
    // Steps' losses are read back every 64 steps: each read waits for the GPU's queued work.
    pending_ = torch::zeros({64, 2}, torch::TensorOptions().dtype(torch::kFloat64).device(device_));
  }

  // Reads back the losses and correct counts of the steps run since the last call (one
  // transfer) and counts them in order.
  void flush_steps() {
    if (pending_n_ == 0) return;
    auto host = pending_.narrow(0, 0, pending_n_).to(torch::kCPU);
    const double* v = host.data_ptr<double>();
    const int64_t first = pending_first_, n = pending_n_;
    pending_n_ = 0;
    for (int64_t i = 0; i < n; ++i) count_step(first + i, v[2 * i], std::llround(v[2 * i + 1]));
  }

  // Adds step `step`'s (0-based) mean loss and correct predictions to the epoch's sums.
  void count_step(int64_t step, double l, int64_t correct) {
    if (!std::isfinite(l))
      throw std::runtime_error("the loss became " + std::to_string(l) + " at epoch " + std::to_string(state_.epoch) + " step " +
                               std::to_string(step + 1) + "; lower --lr (" + (run_dir_ / "last.pt").string() +
                               " holds the last good weights)");
    const int64_t b = std::min<int64_t>(config_.batch, n_ - step * config_.batch);
    state_.loss_sum += l * double(b);
    state_.correct += correct;
    state_.seen += b;
    if (config_.progress && bar_) {
      char extra[96];
      std::snprintf(extra, sizeof extra, "loss: %.4f - accuracy: %.4f", state_.loss_sum / double(state_.seen),
                    double(state_.correct) / double(state_.seen));
      bar_->update(step + 1, extra);
    }
  }

  // The network's input, the loss's targets and the labels for rows [offset, offset + share)
  // of the batch perm[start, start + b), augmented as the whole batch would be (BatchSlice):
  // the random draws are the whole batch's whatever the share, an empty one included, so every
  // rank's rng stays in step (the next epoch's shuffle draws from it too). The targets are the
  // labels (or the targets train_model was given), with --mixup mixed (mix_rows): then every
  // rank prepares the whole batch, as row i's partner b-1-i may be another rank's, and the
  // batch's weight is drawn after the augmentation's draws, the same on every rank;
  // --label-smoothing then moves them towards 1/2.
  std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> prepare_rows(const torch::Tensor& perm, int64_t start, int64_t offset,
                                                                       int64_t share, int64_t b) {
    const bool mix = config_.mixup > 0;
    const int64_t first = mix ? 0 : offset, rows = mix ? b : share;
    auto idx = perm.narrow(0, start + first, rows);
    const auto layout = channels_last_ ? c10::MemoryFormat::ChannelsLast : c10::MemoryFormat::Contiguous;
    auto x =
        model::standardize(augment_(model::to_float_channels_last(images_.index_select(0, idx).to(device_)).contiguous(layout),
                                    rng_, BatchSlice{first, b}))
            .contiguous(layout);
    auto y = labels_.index_select(0, idx).to(device_);  // no copies where the set is on device_ (to_gpu)
    auto target = targets_.defined() ? targets_.index_select(0, idx).to(device_) : y;
    if (mix) {
      std::tie(x, target) = mix_rows(x, target, mixup_weight(config_.mixup, rng_));
      x = x.narrow(0, offset, share), target = target.narrow(0, offset, share), y = y.narrow(0, offset, share);
    }
    return {x, smooth_targets(target, config_.label_smoothing), y};
  }

  // The network's float32 logits for prepared rows (prepare_rows). With --amp the forward pass
  // runs under autocast; backward follows its casts.
  torch::Tensor logits_of(const torch::Tensor& x) { return model::forward(net_, x, device_, config_.amp).reshape({x.size(0)}); }

  // One data-parallel step over the global batch perm[start, start + b): this rank's share
  // forward and backward, gradients averaged over the ranks, the optimizer step. Returns the
  // global batch's mean loss, its correct predictions, and whether any rank was asked to stop.
  std::tuple<double, int64_t, bool> distributed_step(const torch::Tensor& perm, int64_t start, int64_t b) {
    auto [begin, end] = dist::shard(static_cast<std::size_t>(b), group_->rank(), group_->size());
    const int64_t offset = static_cast<int64_t>(begin), share = static_cast<int64_t>(end - begin);
    dist::broadcast_buffers(net_, *group_);
    opt_->zero_grad();
    double loss_sum = 0;
    int64_t correct = 0;
    // Every rank prepares its rows, an empty share included (the random draws stay in step).
    // With --sync-bn every rank runs the network, an empty share too: its BatchNorm layers take
    // part in the statistics' all-reduce.
    auto [x, target, y] = prepare_rows(perm, start, offset, share, b);
    if (share > 0 || config_.sync_bn) {
      auto logits = logits_of(x);
      // Sum over this share / the global batch: summed over ranks, the global batch's mean.
      auto loss = torch::binary_cross_entropy_with_logits(logits, target, {}, {}, at::Reduction::Sum) / double(b);
      loss.backward();
      loss_sum = loss.item<double>() * double(b);
      correct = ((logits >= 0).to(torch::kFloat32) == y).sum().item<int64_t>();
    } else {
      // A batch smaller than the number of ranks leaves some without a share; they still
      // take part in the all-reduce with zero gradients.
      for (auto& p : net_->parameters()) p.mutable_grad() = torch::zeros_like(p);
    }
    reducer_->allreduce(*group_);
    tie_gradients();
    decay_weights();
    opt_->step();
    tie_weights();
    // HISTOSCAN_CHECK_RANKS=1 (tests, debugging): after every step each rank compares its
    // weights with rank 0's, bit for bit. (Buffers are rank 0's from the next step's broadcast
    // on, so parameters are compared.)
    if (check_ranks_)
      dist::check_ranks_agree(net_, *group_,
                              "epoch " + std::to_string(state_.epoch) + " step " + std::to_string(state_.step + 1));
    std::vector<torch::Tensor> stats{torch::tensor({loss_sum, double(correct), g_stop ? 1.0 : 0.0}, torch::kFloat64)};
    group_->allreduce_sum(stats, "summing the step's loss");
    auto st = stats[0];
    return {st[0].item<double>() / double(b), static_cast<int64_t>(std::llround(st[1].item<double>())), st[2].item<double>() > 0};
  }

  [[noreturn]] void stop_here() {
    flush_steps();
    if (!writes_)
      throw Interrupted("training stopped at epoch " + std::to_string(state_.epoch) + ", step " + std::to_string(state_.step) +
                        "; rank 0 saved the run");
    save_state(run_dir_ / "resume.pt", net_, *opt_, state_, rng_);
    meta_["epoch"] = state_.epoch - 1;
    meta_["interrupted_at"] = {{"epoch", state_.epoch}, {"step", state_.step}};
    use_averaged_weights();  // with --ema, last.pt holds the average, as at the end of an epoch
    model::save_checkpoint(run_dir_ / "last.pt", net_, meta_);
    throw Interrupted("training stopped at epoch " + std::to_string(state_.epoch) + ", step " + std::to_string(state_.step) +
                      " of " + std::to_string(steps_) + "; continue with: histoscan train --resume " + run_dir_.string());
  }

  EpochRecord validate(double seconds) {
    auto val_logits = group_ ? distributed_logits()
                             : predict::predict_logits(net_, valid_.pixels.data(), valid_.size(), 256, device_, 1, config_.amp);
    auto val_probs = predict::sigmoid(val_logits);
    EpochRecord r;
    r.epoch = state_.epoch;
    r.loss = state_.loss_sum / double(state_.seen);
    r.accuracy = double(state_.correct) / double(state_.seen);
    auto lt = torch::from_blob(val_logits.data(), {static_cast<int64_t>(val_logits.size())}, torch::kFloat32);
    std::vector<float> yv(valid_.labels.begin(), valid_.labels.end());
    auto yt = torch::from_blob(yv.data(), {static_cast<int64_t>(yv.size())}, torch::kFloat32);
    r.val_loss = torch::binary_cross_entropy_with_logits(lt.to(torch::kFloat64), yt.to(torch::kFloat64)).item<double>();
    r.val_accuracy = eval::classification_report(valid_.labels, val_probs, 0.5).accuracy;
    try {
      r.val_auc = eval::roc_auc(valid_.labels, val_probs);
    } catch (const std::invalid_argument&) {
      r.val_auc = std::nan("");
    }
    r.lr = state_.lr;
    r.seconds = seconds;
    return r;
  }

  // Reduce-LR-on-plateau, as Keras: an improvement must beat the best by min_delta.
  void reduce_lr_on_plateau(double val_loss) {
    const Plateau plateau{config_.lr_patience, config_.lr_factor, config_.min_delta};
    const double factor = plateau_step(plateau, val_loss, state_.plateau_best, state_.since_plateau_best);
    if (factor == 1) return;
    state_.lr *= factor;
    set_lr(*opt_, state_.lr);
    log::info("reducing learning rate to " + format_number(state_.lr));
  }

  // Each rank scores its share of the validation set; the shares are gathered in order.
  std::vector<float> distributed_logits() {
    dist::broadcast_buffers(net_, *group_);
    const std::size_t n = valid_.size();
    auto [begin, end] = dist::shard(n, group_->rank(), group_->size());
    auto mine = predict::predict_logits(net_, valid_.pixels.data() + begin * data::kPatchBytes, end - begin, 256, device_, 1,
                                        config_.amp);
    return dist::gather_shards(mine, n, *group_);
  }

  // Checkpoints, history and the callbacks; true when early stopping ends the run.
  bool end_epoch(const EpochRecord& r) {
    const int epoch = state_.epoch;
    state_.history.push_back(r);
    log::info((config_.progress ? "" : "Epoch " + std::to_string(epoch) + "/" + std::to_string(config_.epochs) + " - ") +
              format_epoch(r));
    meta_["epoch"] = epoch;
    meta_.erase("interrupted_at");
    meta_["val_loss"] = r.val_loss;
    meta_["val_accuracy"] = r.val_accuracy;
    meta_["val_auc"] = std::isfinite(r.val_auc) ? nlohmann::json(r.val_auc) : nlohmann::json(nullptr);
    if (r.val_loss < state_.best_loss) {
      state_.best_loss = r.val_loss;
      state_.since_best = 0;
      state_.best_epoch = epoch;
      state_.best_weights = snapshot(net_);
      if (writes_) model::save_checkpoint(run_dir_ / "best.pt", net_, meta_);
    } else {
      ++state_.since_best;
    }
    if (writes_) {
      model::save_checkpoint(run_dir_ / "last.pt", net_, meta_);
      write_history(run_dir_ / "history.csv", state_.history);
    }

    if (schedule_ == Schedule::plateau) reduce_lr_on_plateau(r.val_loss);
    bool stop = config_.early_stopping_patience > 0 && state_.since_best >= config_.early_stopping_patience;
    if (stop && epoch < config_.epochs)
      log::info("early stopping: val_loss has not improved for " + std::to_string(state_.since_best) + " epochs");
    // --max-minutes: another epoch as long as the longest so far must end within the budget.
    if (!stop && epoch < config_.epochs && config_.max_minutes > 0 &&
        state_.wall_seconds + state_.longest_epoch_seconds > config_.max_minutes * 60) {
      stop = true;
      log::info("time budget: " + format_seconds(state_.wall_seconds) + " spent of --max-minutes " +
                format_number(config_.max_minutes) + "; another epoch (up to " + format_seconds(state_.longest_epoch_seconds) +
                ") would not fit, so training ends after epoch " + std::to_string(epoch));
    }
    // The state after this epoch: a run killed from here on resumes at the next one.
    LoopState next = state_;
    next.epoch = epoch + 1;
    next.step = 0;
    next.finished = stop || epoch == config_.epochs;
    use_training_weights();  // resume.pt holds the weights training goes on from
    if (writes_) save_state(run_dir_ / "resume.pt", net_, *opt_, next, rng_);
    return stop;
  }

  const TrainConfig& config_;
  Augmentation augment_{config_.augment};
  fs::path run_dir_;
  nlohmann::json meta_;
  const data::PatchStore& valid_;
  dist::Group* group_;
  bool writes_;  // rank 0, or the only process
  Schedule schedule_ = schedule_of(config_);
  std::unique_ptr<dist::GradientReducer> reducer_;  // data-parallel runs
  std::unique_ptr<model::DihedralTying> tying_;     // --model-option symmetry=d4
  bool check_ranks_ = std::getenv("HISTOSCAN_CHECK_RANKS") != nullptr;
  std::mt19937_64 rng_;
  c10::Device device_;
  bool channels_last_ = trains_channels_last(config_, device_.is_cuda());
  int64_t n_, steps_;
  std::vector<float> label_values_;
  std::vector<float> target_values_;  // the loss's targets where train_model was given them (else the labels)
  torch::nn::Sequential net_{nullptr};
  std::unique_ptr<torch::optim::Optimizer> opt_;
  torch::Tensor images_, labels_, targets_;
  // Per step run and not yet counted: mean loss and correct predictions (flush_steps). One
  // row on the CPU, so each step is counted (and a non-finite loss caught) as it ends.
  torch::Tensor pending_ = torch::zeros({1, 2}, torch::kFloat64);
  int64_t pending_n_ = 0, pending_first_ = 0;
  ProgressBar* bar_ = nullptr;
  std::vector<torch::Tensor> raw_weights_;  // --ema: the training weights while the average is in the network
  LoopState state_;
};

}  // namespace

void request_stop() { g_stop = true; }

void clear_stop_request() { g_stop = false; }

bool can_resume(const fs::path& run_dir) { return fs::is_regular_file(run_dir / "resume.pt"); }

TrainResult train_model(const data::PatchStore& train, const data::PatchStore& valid, const TrainConfig& config,
                        const fs::path& run_dir, nlohmann::json meta, bool resume, dist::Group* group,
                        const std::vector<float>& targets) {
  validate(config);
  if (train.size() == 0) throw InputError("no training patches");
  if (!targets.empty() && targets.size() != train.size())
    throw std::invalid_argument("train_model: " + std::to_string(targets.size()) + " targets for " +
                                std::to_string(train.size()) + " training patches");
  for (float t : targets)
    if (!(t >= 0 && t <= 1)) throw std::invalid_argument("train_model: a target outside [0, 1]");
  if (valid.size() == 0) throw InputError("no validation patches; pass --valid DATA or a --val-fraction above 0");
  Loop loop(train, valid, config, run_dir, std::move(meta), group, targets);
  return loop.run(resume);
}

}  // namespace histoscan::train
