#pragma once
// A training run's settings (TrainConfig): their checks, the named recipes they start from, and
// their JSON form, the one that config.json, a resumed run, the checkpoints' meta["training"] and
// the recipes' merge with the user's flags all read and write.
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <c10/core/MemoryFormat.h>
#include <nlohmann/json.hpp>

namespace histoscan::train {

struct TrainConfig {
  std::string model = "seed-cnn";
  nlohmann::json model_options = nlohmann::json::object();
  std::string optimizer = "adam";  // or "sgd" (with momentum)
  double momentum = 0.9;           // sgd only
  double lr = 1e-3;
  int batch = 128;
  int epochs = 20;
  int early_stopping_patience = 7;  // epochs without a lower val_loss before stopping; 0: never stop
  int lr_patience = 3;              // epochs without improvement before lr *= lr_factor
  double lr_factor = 0.1;
  double min_delta = 1e-4;  // improvement the plateau schedule requires (Keras' min_delta)
  std::uint64_t seed = 13;
  std::string device = "auto";
  // See train::augment. Not the notebook's "flips": on pcam-subset (2,000 per class, 3 epochs,
  // validated on other slides) dihedral-colour gave AUC 0.828 and 0.852 (seeds 13, 7) where
  // flips gave 0.788 and 0.792; --augment flips restores the notebook's recipe.
  std::string augment = "dihedral-colour";
  double max_minutes = 0;  // > 0: no epoch is started that would end past this wall-clock budget
  // "plateau": reduce-LR-on-plateau (lr_patience, lr_factor), the notebook's; "cosine": lr rises
  // linearly over warmup_epochs, then falls along a half cosine to 0 at the end of epoch `epochs`,
  // set at every step.
  std::string schedule = "plateau";
  double warmup_epochs = 0;
  // > 0: validation, checkpoints and the final weights use an exponential moving average of the
  // weights after each step, decay min(ema, (1 + t) / (10 + t)) at update t (BatchNorm's
  // running statistics averaged alike). Training itself runs on the raw weights.
  double ema = 0;
  // > 0: decoupled weight decay (Loshchilov & Hutter's AdamW; SGDW with --optimizer sgd): before
  // each step every weight of two or more dimensions (convolution and linear weights; not
  // biases or BatchNorm's scales and shifts) is multiplied by 1 - lr * weight_decay, lr being
  // the step's scheduled rate, as torch.optim.AdamW does.
  double weight_decay = 0;
  // > 0: mixup (Zhang et al. 2018) with Beta(mixup, mixup): each batch's network inputs, after
  // augmentation and standardization, become lam * x[i] + (1 - lam) * x[b-1-i] and its targets
  // lam * y[i] + (1 - lam) * y[b-1-i] (b the batch; the batch is in random order, so row b-1-i
  // is a random partner), one lam per batch: lam = max(u, 1 - u), u ~ Beta(mixup, mixup), so
  // each row's own patch dominates and training accuracy counts its own label (mixup_weight).
  double mixup = 0;
  // > 0: label smoothing (Szegedy et al. 2016), in [0, 1): the loss's targets move towards 1/2,
  // y (1 - label_smoothing) + label_smoothing / 2 (after --mixup), so the probabilities it
  // trains towards stay within [label_smoothing / 2, 1 - label_smoothing / 2] (smooth_targets).
  double label_smoothing = 0;
  std::string recipe = "default";  // the recipe these settings started from (recorded, see recipe_config)
  bool amp = false;                // model::Autocast (bfloat16) around the forward pass and validation
  // The layout of activations and convolution weights while training: "nchw", "channels-last",
  // or "auto": channels-last on a GPU (cuDNN's NHWC kernels, tensor cores under --amp) and under
  // amp on the CPU (oneDNN's NHWC kernels, about 1.3x faster there); NCHW for float32 on the CPU,
  // where LibTorch 1.13's channels-last BatchNorm sums less exactly (docs/performance.md: its
  // gradients' error is far below bfloat16's, but far above float32 NCHW's).
  std::string memory_format = "auto";
  bool sync_bn = false;  // data-parallel: BatchNorm statistics over the global batch (dist::with_sync_batchnorm)
  bool progress = true;
};

// Throws InputError naming the flag when a value is out of range.
void validate(const TrainConfig& config);

// Whether training with `config` on a GPU (cuda) or the CPU runs channels-last (memory_format,
// "auto" resolved as TrainConfig says). Never on the CPU for a network LibTorch cannot train
// there in channels-last memory (model::has_unsafe_channels_last_gradient); to know, it builds
// the network once, leaving LibTorch's generator as it found it.
bool trains_channels_last(const TrainConfig& config, bool cuda);

// The same as the layout of activations and convolution weights: ChannelsLast or Contiguous (NCHW).
c10::MemoryFormat training_layout(const TrainConfig& config, bool cuda);

// The default recipe's centre crop, augmentation and epochs (see recipe_config and
// docs/accuracy.md). The crop is the recipe's, not resnet's own default (64): a checkpoint
// records the options it was trained with, and older ones that record none stay at 64.
inline constexpr int kDefaultCrop = 96;
inline constexpr const char* kDefaultAugment = "dihedral+hed=0.1+shift=16";
inline constexpr int kDefaultEpochs = 30;

// A named recipe's settings (--recipe NAME; flags given with it override them). TrainConfig{}
// itself holds the notebook's network and schedule with rotations and colour jitter.
//   "default": histoscan's default recipe (what `histoscan train` runs): resnet with model
//              option crop=kDefaultCrop, augment kDefaultAugment, Adam 1e-3 on a cosine
//              schedule over kDefaultEpochs epochs, no early stopping;
//   "seed":    the notebook's recipe as ../shared/peers/torch_seed_recipe.py runs it: seed-cnn,
//              random flips only, Adam 1e-3, batch 128, reduce-LR-on-plateau (3, 0.1), early
//              stopping (7), up to 20 epochs.
// A recipe's model options apply to its own network only (see recipe_model_options).
// Throws InputError listing the names for another name.
TrainConfig recipe_config(const std::string& name);

// The model options a run starts from before its --model-option flags are merged over them:
// the recipe's where `model` is the recipe's network, none for another network.
nlohmann::json recipe_model_options(const std::string& recipe, const std::string& model);

// Each recipe's name and a one-line description.
std::vector<std::pair<std::string, std::string>> list_recipes();

// The choices among names, parsed once (validate() checks them with the same functions).
enum class Optimizer { adam, sgd };
enum class Schedule { plateau, cosine };
Optimizer optimizer_of(const TrainConfig& config);  // throws InputError naming --optimizer
Schedule schedule_of(const TrainConfig& config);    // throws InputError naming --schedule

// The settings as config.json keeps them: every field but `progress` and `min_delta`, under the
// key whose flag is --KEY with '_' as '-' ("patience" for early_stopping_patience).
nlohmann::json to_json(const TrainConfig& config);

// The inverse of to_json. Keys added in later versions take their old behaviour when missing (an
// older run folder resumes as it was started). Throws nlohmann::json::exception for a missing
// older key or a value of the wrong type.
TrainConfig config_from_json(const nlohmann::json& j);

// The keys of to_json that a recipe sets (the flags it gives defaults for).
const std::vector<std::string>& recipe_keys();

// `config` with its recipe's value (config.recipe) for each of recipe_keys() that `given` says the
// user did not set; the rest as in `config`. Throws InputError for an unknown recipe.
TrainConfig apply_recipe(const TrainConfig& config, const std::function<bool(const std::string& key)>& given);

}  // namespace histoscan::train
