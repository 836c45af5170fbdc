#include "histoscan/train/trainer.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>
#include <ostream>
#include <random>

#include <torch/torch.h>

#include "histoscan/eval/metrics.h"
#include "histoscan/model/checkpoint.h"
#include "histoscan/model/registry.h"
#include "histoscan/predict/predictor.h"
#include "histoscan/train/transforms.h"
#include "histoscan/util/atomic_file.h"
#include "histoscan/util/error.h"
#include "histoscan/util/log.h"
#include "histoscan/util/progress.h"

namespace histoscan::train {

void validate(const TrainConfig& c) {
  if (c.batch < 1) throw InputError("--batch " + std::to_string(c.batch) + " must be at least 1");
  if (c.epochs < 1) throw InputError("--epochs " + std::to_string(c.epochs) + " must be at least 1");
  if (!(c.lr > 0) || !std::isfinite(c.lr)) throw InputError("--lr " + format_number(c.lr) + " must be a positive number");
  if (c.early_stopping_patience < 0) throw InputError("--patience must be 0 (never stop early) or more");
  if (c.lr_patience < 1) throw InputError("--lr-patience must be at least 1");
  if (!(c.lr_factor > 0 && c.lr_factor < 1)) throw InputError("--lr-factor must be between 0 and 1");
  model::make_model(c.model, c.model_options);  // an unknown name fails here, before any data is read
  std::mt19937_64 rng(0);
  augment(torch::zeros({1, 3, 96, 96}), c.augment, rng);  // and so does an unknown augmentation
}

std::string format_epoch(const EpochRecord& r) {
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "loss: %.4f - accuracy: %.4f - val_loss: %.4f - val_accuracy: %.4f - val_auc: %.4f - lr: %.1e - %s",
                r.loss, r.accuracy, r.val_loss, r.val_accuracy, r.val_auc, r.lr, format_seconds(r.seconds).c_str());
  return buf;
}

namespace {

void write_history(const fs::path& path, const std::vector<EpochRecord>& history) {
  write_file_atomic(path, [&](std::ostream& f) {
    f << "epoch,loss,accuracy,val_loss,val_accuracy,val_auc,lr,seconds\n";
    char buf[256];
    for (const auto& r : history) {
      std::snprintf(buf, sizeof buf, "%d,%.6f,%.6f,%.6f,%.6f,%.6f,%.6g,%.2f\n", r.epoch, r.loss, r.accuracy, r.val_loss,
                    r.val_accuracy, r.val_auc, r.lr, r.seconds);
      f << buf;
    }
  });
}

void set_lr(torch::optim::Adam& opt, double lr) {
  for (auto& group : opt.param_groups()) static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);
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

TrainResult train_model(const data::PatchStore& train, const data::PatchStore& valid, const TrainConfig& config,
                        const fs::path& run_dir, nlohmann::json meta) {
  validate(config);
  if (train.size() == 0) throw InputError("no training patches");
  if (valid.size() == 0) throw InputError("no validation patches; pass --valid DATA or a --val-fraction above 0");
  c10::Device device = predict::resolve_device(config.device);
  torch::manual_seed(config.seed);
  std::mt19937_64 rng(config.seed);

  torch::nn::Sequential net = model::make_model(config.model, config.model_options);
  net->to(device);
  torch::optim::Adam opt(net->parameters(), torch::optim::AdamOptions(config.lr));

  const int64_t n = static_cast<int64_t>(train.size());
  auto images = torch::from_blob(const_cast<std::uint8_t*>(train.pixels.data()), {n, 96, 96, 3}, torch::kUInt8);
  std::vector<float> label_values(train.labels.begin(), train.labels.end());
  auto labels = torch::from_blob(label_values.data(), {n}, torch::kFloat32);
  std::vector<int> valid_labels = valid.labels;

  meta["model"] = config.model;
  meta["model_options"] = config.model_options;
  meta["preprocessing"] = {{"input", "RGB uint8 96x96 scaled to [0,1]"}, {"standardize", "per-image"}};
  meta["threshold"] = 0.5;
  meta["versions"] = model::version_info();

  TrainResult result;
  double lr = config.lr;
  double best_loss = std::numeric_limits<double>::infinity();   // early stopping and best.pt
  double plateau_best = std::numeric_limits<double>::infinity();
  int since_best = 0, since_plateau_best = 0;
  std::vector<torch::Tensor> best_weights;
  std::vector<int64_t> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  const int64_t steps = (n + config.batch - 1) / config.batch;

  for (int epoch = 1; epoch <= config.epochs; ++epoch) {
    auto t0 = std::chrono::steady_clock::now();
    if (config.progress) log::info("Epoch " + std::to_string(epoch) + "/" + std::to_string(config.epochs));
    std::shuffle(order.begin(), order.end(), rng);
    auto perm = torch::from_blob(order.data(), {n}, torch::kInt64);
    net->train();
    double loss_sum = 0;
    int64_t correct = 0, seen = 0;
    ProgressBar bar(steps);
    for (int64_t step = 0; step < steps; ++step) {
      int64_t start = step * config.batch, b = std::min<int64_t>(config.batch, n - start);
      auto idx = perm.narrow(0, start, b);
      auto x = standardize(augment(to_float_nchw(images.index_select(0, idx).to(device)), config.augment, rng));
      auto y = labels.index_select(0, idx).to(device);
      auto logits = net->forward(x).reshape({b});
      auto loss = torch::binary_cross_entropy_with_logits(logits, y);
      opt.zero_grad();
      loss.backward();
      opt.step();
      double l = loss.item<double>();
      if (!std::isfinite(l))
        throw std::runtime_error("the loss became " + std::to_string(l) + " at epoch " + std::to_string(epoch) + " step " +
                                 std::to_string(step + 1) + "; lower --lr (last.pt and best.pt hold the last good weights)");
      loss_sum += l * double(b);
      correct += ((logits >= 0).to(torch::kFloat32) == y).sum().item<int64_t>();
      seen += b;
      if (config.progress) {
        char extra[96];
        std::snprintf(extra, sizeof extra, "loss: %.4f - accuracy: %.4f", loss_sum / double(seen), double(correct) / double(seen));
        bar.update(step + 1, extra);
      }
    }
    bar.finish();

    auto val_logits = predict::predict_logits(net, valid.pixels.data(), valid.size(), 256, device);
    auto val_probs = predict::sigmoid(val_logits);
    EpochRecord r;
    r.epoch = epoch;
    r.loss = loss_sum / double(seen);
    r.accuracy = double(correct) / double(seen);
    {
      auto lt = torch::from_blob(val_logits.data(), {static_cast<int64_t>(val_logits.size())}, torch::kFloat32);
      std::vector<float> yv(valid_labels.begin(), valid_labels.end());
      auto yt = torch::from_blob(yv.data(), {static_cast<int64_t>(yv.size())}, torch::kFloat32);
      r.val_loss = torch::binary_cross_entropy_with_logits(lt.to(torch::kFloat64), yt.to(torch::kFloat64)).item<double>();
    }
    r.val_accuracy = eval::classification_report(valid_labels, val_probs, 0.5).accuracy;
    try {
      r.val_auc = eval::roc_auc(valid_labels, val_probs);
    } catch (const std::invalid_argument&) {
      r.val_auc = std::nan("");
    }
    r.lr = lr;
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    result.history.push_back(r);
    log::info((config.progress ? "" : "Epoch " + std::to_string(epoch) + "/" + std::to_string(config.epochs) + " - ") +
              format_epoch(r));

    meta["epoch"] = epoch;
    meta["val_loss"] = r.val_loss;
    meta["val_accuracy"] = r.val_accuracy;
    meta["val_auc"] = std::isfinite(r.val_auc) ? nlohmann::json(r.val_auc) : nlohmann::json(nullptr);
    if (r.val_loss < best_loss) {
      best_loss = r.val_loss;
      since_best = 0;
      result.best_epoch = epoch;
      best_weights = snapshot(net);
      model::save_checkpoint(run_dir / "best.pt", net, meta);
    } else {
      ++since_best;
    }
    model::save_checkpoint(run_dir / "last.pt", net, meta);
    write_history(run_dir / "history.csv", result.history);

    // Reduce-LR-on-plateau, as Keras: an improvement must beat the best by min_delta.
    if (r.val_loss < plateau_best - config.min_delta) {
      plateau_best = r.val_loss;
      since_plateau_best = 0;
    } else if (++since_plateau_best >= config.lr_patience) {
      lr *= config.lr_factor;
      set_lr(opt, lr);
      since_plateau_best = 0;
      log::info("reducing learning rate to " + std::to_string(lr));
    }
    if (config.early_stopping_patience > 0 && since_best >= config.early_stopping_patience) {
      result.stopped_early = epoch < config.epochs;
      if (result.stopped_early)
        log::info("early stopping: val_loss has not improved for " + std::to_string(since_best) + " epochs");
      break;
    }
  }
  if (!best_weights.empty()) {
    restore(net, best_weights);
    log::info("restored the weights of epoch " + std::to_string(result.best_epoch) + " (lowest val_loss)");
  }
  return result;
}

}  // namespace histoscan::train
