#include "histoscan/train/config.h"

#include <cmath>
#include <mutex>

#include <torch/torch.h>

#include "histoscan/model/registry.h"
#include "histoscan/predict/predictor.h"
#include "histoscan/train/transforms.h"
#include "histoscan/util/error.h"

namespace histoscan::train {

bool trains_channels_last(const TrainConfig& config, bool cuda) {
  const bool wanted = config.memory_format == "channels-last" || (config.memory_format == "auto" && (cuda || config.amp));
  if (!wanted || cuda) return wanted;
  // The network is built only to be inspected; its initialisation's draws are given back, so
  // asking never moves a run's random numbers.
  auto gen = at::detail::getDefaultCPUGenerator();
  torch::Tensor drawn_from;
  {
    std::lock_guard<std::mutex> lock(gen.mutex());
    drawn_from = gen.get_state();
  }
  const bool unsafe = model::has_unsafe_channels_last_gradient(*model::make_model(config.model, config.model_options));
  {
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(drawn_from);
  }
  return !unsafe;  // NCHW where LibTorch's CPU gradient is unsafe
}

c10::MemoryFormat training_layout(const TrainConfig& config, bool cuda) {
  return trains_channels_last(config, cuda) ? c10::MemoryFormat::ChannelsLast : c10::MemoryFormat::Contiguous;
}

void validate(const TrainConfig& c) {
  if (c.batch < 1) throw InputError("--batch " + std::to_string(c.batch) + " must be at least 1");
  if (c.epochs < 1) throw InputError("--epochs " + std::to_string(c.epochs) + " must be at least 1");
  if (!(c.lr > 0) || !std::isfinite(c.lr)) throw InputError("--lr " + format_number(c.lr) + " must be a positive number");
  if (c.early_stopping_patience < 0) throw InputError("--patience must be 0 (never stop early) or more");
  if (c.lr_patience < 1) throw InputError("--lr-patience must be at least 1");
  if (!(c.lr_factor > 0 && c.lr_factor < 1)) throw InputError("--lr-factor must be between 0 and 1");
  optimizer_of(c);
  if (!(c.momentum >= 0 && c.momentum < 1))
    throw InputError("--momentum " + format_number(c.momentum) + " must be from 0 to below 1");
  schedule_of(c);
  if (!(c.warmup_epochs >= 0 && c.warmup_epochs < c.epochs))
    throw InputError("--warmup-epochs " + format_number(c.warmup_epochs) + " must be from 0 to below --epochs");
  if (!(c.ema >= 0 && c.ema < 1))
    throw InputError("--ema " + format_number(c.ema) + " must be 0 (off) or a decay below 1, e.g. 0.999");
  if (!(c.weight_decay >= 0) || !std::isfinite(c.weight_decay) || c.weight_decay * c.lr >= 1)
    throw InputError("--weight-decay " + format_number(c.weight_decay) +
                     " must be 0 (off) or a positive number below 1 / --lr, e.g. 0.05");
  if (!(c.mixup >= 0) || !std::isfinite(c.mixup))
    throw InputError("--mixup " + format_number(c.mixup) + " must be 0 (off) or a positive Beta parameter, e.g. 0.2");
  if (!(c.label_smoothing >= 0 && c.label_smoothing < 1))
    throw InputError("--label-smoothing " + format_number(c.label_smoothing) + " must be at least 0 (off) and below 1, e.g. 0.1");
  if (c.memory_format != "auto" && c.memory_format != "nchw" && c.memory_format != "channels-last")
    throw InputError("--memory-format " + c.memory_format + ": expected auto, nchw or channels-last");
  if (!(c.max_minutes >= 0) || !std::isfinite(c.max_minutes))
    throw InputError("--max-minutes " + format_number(c.max_minutes) + " must be 0 (no limit) or a positive number of minutes");
  recipe_config(c.recipe);                                 // an unknown recipe,
  auto net = model::make_model(c.model, c.model_options);  // or network, fails here, before any data is read
  if (c.memory_format == "channels-last" && !predict::resolve_device(c.device).is_cuda() &&
      model::has_unsafe_channels_last_gradient(*net))
    throw InputError(
        "--memory-format channels-last: this network has a strided 1x1 convolution on fewer than 16 "
        "channels, whose CPU gradient in channels-last memory corrupts memory in LibTorch 1.13; use "
        "--memory-format auto or nchw, or a width of at least 16");
  (void)Augmentation(c.augment);  // and so does an unknown augmentation
}

TrainConfig recipe_config(const std::string& name) {
  TrainConfig c;
  c.recipe = name;
  if (name == "default") {
    c.model = "resnet";
    c.model_options = {{"crop", kDefaultCrop}};
    c.augment = kDefaultAugment;
    c.schedule = "cosine";
    c.warmup_epochs = 0;
    c.epochs = kDefaultEpochs;
    c.early_stopping_patience = 0;  // the cosine schedule's last epochs, at the smallest steps, are its best
    return c;
  }
  if (name == "seed") {
    c.model = "seed-cnn";
    c.augment = "flips";
    c.optimizer = "adam";
    c.lr = 1e-3;
    c.batch = 128;
    c.epochs = 20;
    c.early_stopping_patience = 7;
    c.lr_patience = 3;
    c.lr_factor = 0.1;
    c.schedule = "plateau";
    c.warmup_epochs = 0;
    c.ema = 0;
    return c;
  }
  std::string known;
  for (const auto& [n, d] : list_recipes()) known += (known.empty() ? "" : ", ") + n;
  throw InputError("--recipe " + name + ": expected one of " + known);
}

nlohmann::json recipe_model_options(const std::string& recipe, const std::string& model) {
  auto c = recipe_config(recipe);
  return c.model == model ? c.model_options : nlohmann::json::object();
}

std::vector<std::pair<std::string, std::string>> list_recipes() {
  return {
      {"default", "histoscan's default: resnet on the centre " + std::to_string(kDefaultCrop) + " x " +
                      std::to_string(kDefaultCrop) + " (--model-option crop=" + std::to_string(kDefaultCrop) + "), --augment " +
                      kDefaultAugment + ", Adam 1e-3 on a cosine schedule over " + std::to_string(kDefaultEpochs) + " epochs"},
      {"seed", "the notebook's: seed-cnn, random flips, Adam 1e-3, up to 20 epochs (as torch_seed_recipe.py)"}};
}

Optimizer optimizer_of(const TrainConfig& c) {
  if (c.optimizer == "adam") return Optimizer::adam;
  if (c.optimizer == "sgd") return Optimizer::sgd;
  throw InputError("--optimizer " + c.optimizer + ": expected adam or sgd");
}

Schedule schedule_of(const TrainConfig& c) {
  if (c.schedule == "plateau") return Schedule::plateau;
  if (c.schedule == "cosine") return Schedule::cosine;
  throw InputError("--schedule " + c.schedule + ": expected plateau or cosine");
}

nlohmann::json to_json(const TrainConfig& c) {
  return {{"model", c.model},
          {"model_options", c.model_options},
          {"optimizer", c.optimizer},
          {"momentum", c.momentum},
          {"lr", c.lr},
          {"batch", c.batch},
          {"epochs", c.epochs},
          {"patience", c.early_stopping_patience},
          {"lr_patience", c.lr_patience},
          {"lr_factor", c.lr_factor},
          {"seed", c.seed},
          {"device", c.device},
          {"augment", c.augment},
          {"sync_bn", c.sync_bn},
          {"amp", c.amp},
          {"memory_format", c.memory_format},
          {"recipe", c.recipe},
          {"schedule", c.schedule},
          {"warmup_epochs", c.warmup_epochs},
          {"ema", c.ema},
          {"weight_decay", c.weight_decay},
          {"mixup", c.mixup},
          {"label_smoothing", c.label_smoothing},
          {"max_minutes", c.max_minutes}};
}

TrainConfig config_from_json(const nlohmann::json& j) {
  TrainConfig c;
  c.model = j.at("model");
  c.model_options = j.at("model_options");
  c.lr = j.at("lr");
  c.batch = j.at("batch");
  c.epochs = j.at("epochs");
  c.early_stopping_patience = j.at("patience");
  c.lr_patience = j.at("lr_patience");
  c.lr_factor = j.at("lr_factor");
  c.seed = j.at("seed");
  c.device = j.at("device");
  c.augment = j.at("augment");
  // Added later: what a run from before them did.
  c.optimizer = j.value("optimizer", "adam");
  c.momentum = j.value("momentum", 0.9);
  c.sync_bn = j.value("sync_bn", false);
  c.amp = j.value("amp", false);
  c.memory_format = j.value("memory_format", "auto");
  c.recipe = j.value("recipe", "default");
  c.max_minutes = j.value("max_minutes", 0.0);
  c.schedule = j.value("schedule", "plateau");
  c.warmup_epochs = j.value("warmup_epochs", 0.0);
  c.ema = j.value("ema", 0.0);
  c.weight_decay = j.value("weight_decay", 0.0);
  c.mixup = j.value("mixup", 0.0);
  c.label_smoothing = j.value("label_smoothing", 0.0);
  return c;
}

const std::vector<std::string>& recipe_keys() {
  static const std::vector<std::string> keys = {
      "model",     "epochs",   "max_minutes",   "batch", "lr",           "optimizer", "momentum", "patience",       "lr_patience",
      "lr_factor", "schedule", "warmup_epochs", "ema",   "weight_decay", "augment",   "mixup",    "label_smoothing"};
  return keys;
}

TrainConfig apply_recipe(const TrainConfig& config, const std::function<bool(const std::string& key)>& given) {
  const nlohmann::json recipe = to_json(recipe_config(config.recipe));
  nlohmann::json merged = to_json(config);
  for (const auto& key : recipe_keys())
    if (!given(key)) merged[key] = recipe.at(key);
  TrainConfig out = config_from_json(merged);
  out.min_delta = config.min_delta;
  out.progress = config.progress;
  return out;
}

}  // namespace histoscan::train
