// histoscan train DATA --out RUN_DIR
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <memory>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "app.h"
#include "commands.h"
#include "histoscan/data/sampling.h"
#include "histoscan/data/stain.h"
#include "histoscan/data/store.h"
#include "histoscan/data/train_valid.h"
#include "histoscan/dist/dist.h"
#include "histoscan/eval/metrics.h"
#include "histoscan/model/builtin.h"
#include "histoscan/model/checkpoint.h"
#include "histoscan/model/precision.h"
#include "histoscan/pipeline/evaluate.h"
#include "histoscan/predict/predictor.h"
#include "histoscan/train/trainer.h"
#include "histoscan/util/atomic_file.h"
#include "histoscan/util/csv.h"
#include "histoscan/util/error.h"
#include "histoscan/util/log.h"
#include "train_flags.h"

namespace histoscan::cli {

namespace {

std::string read_text_file(const fs::path& path) {
  std::ifstream f(path);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

struct TrainParams {
  std::string data, out, valid, labels, valid_labels, groups, resume;
  std::string command;  // the invocation that started the run (a resumed run keeps the first)
  long long per_class = 0;
  double val_fraction = 0.25;
  bool allow_missing = false, resize = false, overwrite = false, skip_bad = false;
  int threads = 0;
  std::string dist_url;
  std::string stain_norm = "none", stain_ref;         // --stain-norm, --stain-ref
  std::optional<data::StainReference> resumed_stain;  // a resumed run's, from its config.json
  std::vector<std::string> model_options;
  // --teacher (distillation): checkpoints whose mean probability over --teacher-tta views of each
  // training patch is blended into its target, (1 - teacher_weight) label + teacher_weight p.
  std::vector<std::string> teachers;
  double teacher_weight = 0.5;
  int teacher_tta = 8;
  bool teacher_weight_given = false, teacher_tta_given = false;  // given on the command line
  double dist_timeout = 300;
  train::TrainConfig config;
};

// Paths as absolute, so --resume works from any folder.
std::string absolute(const std::string& path) { return path.empty() ? path : fs::absolute(path).lexically_normal().string(); }

// config.json: the data flags, then the training settings (train::to_json).
nlohmann::json to_json(const TrainParams& p, int threads) {
  nlohmann::json j = train::to_json(p.config);
  j.update({{"data", absolute(p.data)},
            {"out", absolute(p.out)},
            {"valid", absolute(p.valid)},
            {"labels", absolute(p.labels)},
            {"valid_labels", absolute(p.valid_labels)},
            {"groups", absolute(p.groups)},
            {"per_class", p.per_class},
            {"val_fraction", p.valid.empty() ? nlohmann::json(p.val_fraction) : nlohmann::json(nullptr)},
            {"allow_missing", p.allow_missing},
            {"resize", p.resize},
            {"skip_bad", p.skip_bad},
            {"threads", threads},
            {"stain_ref", absolute(p.stain_ref)},
            {"command", p.command}});
  if (!p.teachers.empty()) {
    nlohmann::json teachers = nlohmann::json::array();
    for (const auto& t : p.teachers) teachers.push_back(absolute(model::resolve_model(t)));
    j.update({{"teacher", teachers}, {"teacher_weight", p.teacher_weight}, {"teacher_tta", p.teacher_tta}});
  }
  return j;
}

// --resume RUN_DIR: the flags come from RUN_DIR/config.json, as the interrupted run resolved them.
void load_resumed_flags(TrainParams& p) {
  fs::path config_path = fs::path(p.resume) / "config.json";
  if (!fs::exists(config_path) || !train::can_resume(p.resume))
    throw InputError("--resume " + p.resume +
                     ": not a run folder (no config.json and resume.pt); give the --out folder of an earlier 'histoscan train'");
  try {
    nlohmann::json c = nlohmann::json::parse(read_text_file(config_path));
    p.data = c.at("data");
    p.out = p.resume;
    p.valid = c.at("valid");
    p.labels = c.at("labels");
    p.valid_labels = c.at("valid_labels");
    p.groups = c.at("groups");
    p.per_class = c.at("per_class");
    if (!c.at("val_fraction").is_null()) p.val_fraction = c.at("val_fraction");
    p.allow_missing = c.at("allow_missing");
    p.resize = c.at("resize");
    p.skip_bad = c.at("skip_bad");
    p.threads = c.at("threads");
    p.resumed_stain = data::stain_from_json(c.value("stain_norm", nlohmann::json(nullptr)), config_path.string());
    p.stain_norm = data::stain_method_name(p.resumed_stain->method);
    const bool progress = p.config.progress;
    p.config = train::config_from_json(c);
    p.config.progress = progress;
    p.command = c.value("command", "");  // runs from before the command was kept have none
    if (c.contains("teacher")) {
      p.teachers = c.at("teacher").get<std::vector<std::string>>();
      p.teacher_weight = c.at("teacher_weight");
      p.teacher_tta = c.at("teacher_tta");
    }
  } catch (const nlohmann::json::exception& e) {
    throw InputError(config_path.string() + " is damaged or from another version (" + e.what() +
                     "); start a new run instead of --resume");
  }
}

// --teacher, --teacher-weight, --teacher-tta: refused before any data is read. Returns the
// teachers loaded (a checkpoint file or a built-in model's name each), none when the run
// resumes: then its teacher.csv holds what the teachers said, and their files may be gone.
std::vector<model::Checkpoint> load_teachers(const TrainParams& p) {
  if (p.teachers.empty() && (p.teacher_weight_given || p.teacher_tta_given))
    throw InputError(std::string(p.teacher_weight_given ? "--teacher-weight" : "--teacher-tta") +
                     " needs --teacher CHECKPOINT (the network whose probabilities the run learns from)");
  std::vector<model::Checkpoint> loaded;
  if (p.teachers.empty()) return loaded;
  if (!(p.teacher_weight > 0 && p.teacher_weight <= 1))
    throw InputError("--teacher-weight " + format_number(p.teacher_weight) +
                     " must be above 0 and at most 1 (the teacher's share of each target, e.g. 0.5)");
  if (p.teacher_tta != 1 && p.teacher_tta != 2 && p.teacher_tta != 4 && p.teacher_tta != 8)
    throw InputError("--teacher-tta " + std::to_string(p.teacher_tta) + " must be 1, 2, 4 or 8 (views per patch)");
  if (p.resume.empty())
    for (const auto& t : p.teachers) loaded.push_back(model::load_checkpoint(t));
  return loaded;
}

const char* const kTeacherCsv = "teacher.csv";

// The teachers' mean probability for each training patch, each teacher with its own
// preprocessing (stain normalization included) on the patches as read, before the student's
// own --stain-norm recolours them. As float32, which teacher.csv holds exactly (9 digits): a
// resumed run reads the same values.
std::vector<float> score_with_teachers(const TrainParams& p, std::vector<model::Checkpoint>& teachers,
                                       const data::PatchStore& train) {
  std::vector<double> mean(train.size(), 0.0);
  for (auto& checkpoint : teachers) {
    auto probs = pipeline::score_store(checkpoint, train, p.config.device, 256, p.teacher_tta, p.config.amp);
    for (std::size_t i = 0; i < mean.size(); ++i) mean[i] += probs[i] / double(teachers.size());
  }
  return {mean.begin(), mean.end()};
}

// A resumed run's teacher probabilities, as its first start wrote them to RUN_DIR/teacher.csv
// (id,label,teacher): the targets stay those it started with, whether or not the teachers'
// files are still there.
std::vector<float> read_teacher_csv(const fs::path& path, const data::PatchStore& train) {
  std::unordered_map<std::string, float> by_id;
  try {
    CsvReader<2> reader(path.string());
    reader.read_header(io::ignore_extra_column, "id", "teacher");
    std::string id;
    double value = 0;
    while (reader.read_row(id, value)) by_id[id] = static_cast<float>(value);
  } catch (const io::error::base& e) {
    throw InputError(std::string(e.what()) + "; start a new run instead of --resume");
  }
  std::vector<float> probs;
  probs.reserve(train.size());
  for (const auto& id : train.ids) {
    auto it = by_id.find(id);
    if (it == by_id.end() || !(it->second >= 0 && it->second <= 1))
      throw InputError(path.string() + " has no teacher probability for patch " + id + "; start a new run instead of --resume");
    probs.push_back(it->second);
  }
  return probs;
}

void write_teacher_csv(const fs::path& path, const data::PatchStore& train, const std::vector<float>& probs) {
  write_file_atomic(path, [&](std::ostream& f) {
    f << "id,label,teacher\n";
    char buf[32];
    for (std::size_t i = 0; i < probs.size(); ++i) {
      std::snprintf(buf, sizeof buf, ",%d,%.9g\n", train.labels[i], probs[i]);
      f << csv_field(train.ids[i]) << buf;
    }
  });
}

// Each patch's target: (1 - w) label + w teacher. Logs how far the teachers agree with the labels.
std::vector<float> distillation_targets(const TrainParams& p, const data::PatchStore& train, const std::vector<float>& probs) {
  std::vector<float> targets(train.size());
  std::size_t agree = 0;
  for (std::size_t i = 0; i < targets.size(); ++i) {
    targets[i] = static_cast<float>((1 - p.teacher_weight) * train.labels[i] + p.teacher_weight * probs[i]);
    agree += (probs[i] >= 0.5) == (train.labels[i] == 1);
  }
  char auc[32] = "-";
  try {
    std::snprintf(auc, sizeof auc, "%.4f", eval::roc_auc(train.labels, std::vector<double>(probs.begin(), probs.end())));
  } catch (const std::invalid_argument&) {  // one class only
  }
  char agreed[32];
  std::snprintf(agreed, sizeof agreed, "%.1f%%", 100.0 * double(agree) / double(std::max<std::size_t>(1, train.size())));
  log::info("teacher (" + std::to_string(p.teachers.size()) + " checkpoint" + (p.teachers.size() > 1 ? "s" : "") + ", " +
            std::to_string(p.teacher_tta) + " views): agrees with " + agreed + " of the training labels (AUC " + auc +
            "); targets are " + format_number(1 - p.teacher_weight) + " label + " + format_number(p.teacher_weight) + " teacher");
  return targets;
}

// --stain-norm: the reference (fitted to --stain-ref, or to the training patches; a resumed run's
// as it was), and the training and validation patches recoloured to it. Deterministic, so every
// rank of a distributed run fits the same.
data::StainReference normalize_training_stain(const TrainParams& p, data::PatchStore& train, data::PatchStore& valid) {
  const auto method = data::stain_method_of(p.stain_norm);
  if (method == data::StainMethod::none) return {};
  const auto t0 = std::chrono::steady_clock::now();
  data::StainReference ref;
  if (p.resumed_stain) ref = *p.resumed_stain;
  else if (!p.stain_ref.empty()) ref = data::fit_stain_to_image(method, p.stain_ref);
  else
    ref = data::fit_stain_reference(method, train.pixels.data(), data::kPatchBytes / 3, train.size(),
                                    std::to_string(train.size()) + " training patches");
  data::normalize_stain(ref, train.pixels.data(), data::kPatchBytes / 3, train.size(), p.threads);
  data::normalize_stain(ref, valid.pixels.data(), data::kPatchBytes / 3, valid.size(), p.threads);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  log::info("stain normalization (" + p.stain_norm + ", fitted to " + ref.fitted_on +
            "): " + std::to_string(train.size() + valid.size()) + " patches recoloured in " + format_number(secs) + " s");
  return ref;
}

// A distributed run's processes, before anything else: every rank loads the data and rank 0
// alone writes. nullptr for a plain single process.
std::unique_ptr<dist::Group> join_job(TrainParams& p) {
  if (!(p.dist_timeout > 0))
    throw InputError("--dist-timeout " + format_number(p.dist_timeout) + " must be a positive number of seconds");
  auto launch = dist::launch_from_environment(p.dist_url);
  if (!launch) return nullptr;
  auto group = std::make_unique<dist::Group>(*launch, p.dist_timeout);
  if (group->rank() != 0) {
    log::set_level(log::Level::warn);  // one voice: rank 0 reports
    p.config.progress = false;
  }
  // Ranks on one machine share its cores unless told otherwise.
  if (p.threads == 0) p.threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / launch->local_world_size);
  log::info("distributed training: " + std::to_string(group->size()) + " ranks over Gloo (" + launch->store + "), " +
            std::to_string(p.threads) + " threads each");
  return group;
}

void run_train_ranked(TrainParams& p, dist::Group* group, bool rank0, const std::function<void(bool)>& agree) {
  // --model-option KEY=VALUE over the recipe's options for this network (set in add_train).
  const nlohmann::json given = parse_model_options(p.model_options);  // kept: items() refers to it
  for (const auto& [key, value] : given.items()) p.config.model_options[key] = value;
  if (!p.resume.empty()) {
    load_resumed_flags(p);
  } else {
    if (p.data.empty() || p.out.empty()) throw InputError("train needs DATA and --out RUN_DIR (or --resume RUN_DIR)");
    p.command = command_line();
  }
  train::validate(p.config);
  auto teachers = load_teachers(p);
  if (!p.valid.empty() && !p.groups.empty()) throw InputError("--groups splits DATA; it cannot be combined with --valid");
  if (p.valid.empty() && !(p.val_fraction > 0 && p.val_fraction < 1))
    throw InputError("--val-fraction " + format_number(p.val_fraction) +
                     " must be between 0 and 1 (exclusive), or pass --valid DATA");
  if (p.per_class < 0) throw InputError("--per-class must be positive");
  if (data::stain_method_of(p.stain_norm) == data::StainMethod::none && !p.stain_ref.empty())
    throw InputError("--stain-ref " + p.stain_ref + " needs --stain-norm macenko or reinhard");
  if (rank0 && p.resume.empty()) check_output_dir(p.out, p.overwrite, "--out");
  int threads = set_threads(p.threads);

  data::SourceOptions source;
  source.labels = p.labels;
  source.allow_missing = p.allow_missing;
  auto index = data::index_source(p.data, source);
  auto labels = index.labels();
  std::vector<std::size_t> rows;
  if (p.per_class > 0) {
    rows = data::sample_per_class(labels, static_cast<std::size_t>(p.per_class), p.config.seed);
  } else {
    rows.resize(labels.size());
    for (std::size_t i = 0; i < rows.size(); ++i) rows[i] = i;
  }

  data::TrainValidOptions split;
  split.valid = p.valid;
  split.valid_source.labels = p.valid_labels;
  split.valid_source.allow_missing = p.allow_missing;
  split.groups = p.groups;
  split.val_fraction = p.val_fraction;
  split.seed = p.config.seed;
  split.load.threads = p.threads;
  split.load.decode.resize = p.resize;
  split.load.skip_bad = p.skip_bad;
  auto [train_store, valid_store, skipped, shared_ids] = data::load_train_valid(index, rows, split);
  std::vector<float> teacher;
  if (!p.teachers.empty())
    teacher = p.resume.empty() ? score_with_teachers(p, teachers, train_store)
                               : read_teacher_csv(fs::path(p.out) / kTeacherCsv, train_store);
  teachers.clear();  // the networks are not needed past here
  const auto stain = normalize_training_stain(p, train_store, valid_store);

  nlohmann::json config = to_json(p, threads);
  config["stain_norm"] = data::to_json(stain);
  config["train_patches"] = train_store.size();
  config["valid_patches"] = valid_store.size();
  config["source"] = index.describe();
  if (group) config["world_size"] = group->size();
  if (rank0 && p.resume.empty()) {
    prepare_output_dir(p.out, p.overwrite, "--out");
    write_file_atomic(fs::path(p.out) / "config.json", [&](std::ostream& f) { f << config.dump(2) << '\n'; });
    if (!teacher.empty()) write_teacher_csv(fs::path(p.out) / kTeacherCsv, train_store, teacher);
    else fs::remove(fs::path(p.out) / kTeacherCsv);  // left by an earlier run in an --overwrite folder
  }
  agree(true);
  if (rank0 && !skipped.empty()) {
    data::write_skipped_csv(skipped, fs::path(p.out) / "skipped.csv");
    log::warn(std::to_string(skipped.size()) + " unreadable images left out; see " + p.out + "/skipped.csv");
  }
  nlohmann::json meta = {
      {"training", config}, {"data_source", index.describe()}, {"seed", p.config.seed}, {"stain_norm", config["stain_norm"]}};
  // Ctrl-C: finish the step, save what --resume needs, exit; a second Ctrl-C kills at once.
  // (histoscan.train() in Python puts Python's own handler back afterwards.)
  train::clear_stop_request();
  std::signal(SIGINT, [](int) {
    train::request_stop();
    std::signal(SIGINT, SIG_DFL);
  });
  const auto targets = teacher.empty() ? std::vector<float>{} : distillation_targets(p, train_store, teacher);
  auto result = train::train_model(train_store, valid_store, p.config, p.out, meta, !p.resume.empty(), group, targets);
  if (!rank0) return;
  const auto& best = result.history[static_cast<std::size_t>(result.best_epoch - 1)];
  char buf[160];
  std::snprintf(buf, sizeof buf, "best epoch %d: val_loss %.4f, val_accuracy %.4f, val_auc %.4f", best.epoch, best.val_loss,
                best.val_accuracy, best.val_auc);
  std::cout << buf << '\n' << "results in " << p.out << "/ (best.pt, last.pt, history.csv, config.json)\n";
}

void run_train(TrainParams& p) {
  auto group = join_job(p);
  const bool rank0 = !group || group->rank() == 0;
  // A rank that fails before training tells the others, so all stop now, not at a timeout.
  bool agreed = false;
  auto agree = [&](bool ok) {
    if (!group) return;
    bool all = group->all_ok(ok, "agreeing to start training");
    agreed = true;
    if (ok && !all) throw InputError(group->launch().describe() + ": another rank stopped before training (see its message)");
  };
  try {
    run_train_ranked(p, group.get(), rank0, agree);
  } catch (const dist::Error&) {
    throw;
  } catch (const std::exception&) {
    if (group && !agreed) try {
        agree(false);
      } catch (...) {
      }
    throw;
  }
}

}  // namespace

void add_train(CLI::App& app) {
  auto p = std::make_shared<TrainParams>();
  auto& c = p->config;
  c = train::recipe_config("default");  // what each flag shows as its default
  auto* cmd = app.add_subcommand("train", "train a network; writes best.pt, last.pt, history.csv and config.json to --out");
  auto* data =
      cmd->add_option("DATA", p->data, "training patches: Kaggle folder (+ train_labels.csv), class folders 0/ 1/, or .h5");
  auto* out = cmd->add_option("-o,--out", p->out, "run folder to write");
  cmd->add_option("--resume", p->resume, "continue an interrupted run from its folder (flags from its config.json)")
      ->excludes(data)
      ->excludes(out);
  cmd->add_option("--valid", p->valid, "a separate validation set (any DATA form) instead of splitting DATA");
  cmd->add_option("--val-fraction", p->val_fraction, "share of DATA held out for validation when --valid is not given")
      ->capture_default_str();
  cmd->add_option("--per-class", p->per_class, "draw a balanced random sample of N patches per class (the notebook: 40000)");
  cmd->add_option("--stain-norm", p->stain_norm,
                  "recolour every patch to one staining before the network sees it: none, macenko (Macenko 2009) or "
                  "reinhard (Reinhard 2001); fitted to the training patches (or --stain-ref), kept in the checkpoint and "
                  "applied by evaluate, predict and scan")
      ->capture_default_str();
  cmd->add_option("--stain-ref", p->stain_ref,
                  "an image of tissue whose staining --stain-norm fits to, instead of the training patches");
  cmd->add_option("--groups", p->groups, "CSV id,group (e.g. slide): each group stays on one side of the split");
  cmd->add_option("--labels", p->labels, "labels CSV for DATA (default: train_labels.csv in or beside it)");
  cmd->add_option("--valid-labels", p->valid_labels, "labels CSV for --valid");
  cmd->add_flag("--allow-missing", p->allow_missing, "train on the matched patches when files or labels are unmatched");
  cmd->add_flag("--resize", p->resize, "resize images that are not 96x96 instead of refusing them");
  cmd->add_flag("--skip-bad", p->skip_bad, "leave out unreadable images, listed in RUN_DIR/skipped.csv");
  std::string recipes;
  for (const auto& [name, description] : train::list_recipes()) recipes += "; " + name + ": " + description;
  cmd->add_option("--recipe", c.recipe, "a named set of the training flags below, which flags given with it override" + recipes)
      ->capture_default_str();
  // The flags a recipe sets (train::recipe_keys()): a flag the user does not give takes the recipe's
  // value. The network, optimizer, augmentation, seed, device and layout are declared with
  // histoscan-engine's (apps/common/train_flags.h).
  add_training_flags(cmd, c);
  cmd->add_option("--max-minutes", c.max_minutes,
                  "wall-clock budget of the epochs (0: none): no epoch starts that would end past it, judged by "
                  "the longest so far")
      ->capture_default_str();
  cmd->add_option("--patience", c.early_stopping_patience, "early stopping: epochs without a lower val_loss (0: off)")
      ->capture_default_str();
  cmd->add_option("--lr-patience", c.lr_patience, "reduce-LR-on-plateau: epochs without improvement")->capture_default_str();
  cmd->add_option("--lr-factor", c.lr_factor, "reduce-LR-on-plateau: factor")->capture_default_str();
  cmd->add_option("--schedule", c.schedule,
                  "learning rate: plateau (reduce on plateau: --lr-patience, --lr-factor) or cosine (warm-up, "
                  "then a half cosine to 0 at the last epoch, every step)")
      ->capture_default_str();
  cmd->add_option("--warmup-epochs", c.warmup_epochs, "--schedule cosine: epochs of linear warm-up (fractions allowed)")
      ->capture_default_str();
  cmd->add_option("--ema", c.ema,
                  "validate, checkpoint and keep an exponential moving average of the weights with this decay "
                  "(e.g. 0.999; 0: off)")
      ->capture_default_str();
  cmd->add_option("--weight-decay", c.weight_decay,
                  "decoupled weight decay, as PyTorch's AdamW (SGDW with --optimizer sgd): each step multiplies "
                  "convolution and linear weights by 1 - lr * this (e.g. 0.05; 0: off)")
      ->capture_default_str();
  cmd->add_option("--mixup", c.mixup,
                  "mixup: train on pairs of patches blended with weight lam = max(u, 1 - u), u ~ Beta(this, this), "
                  "one per batch, their labels blended alike (e.g. 0.2; 0: off)")
      ->capture_default_str();
  cmd->add_option("--label-smoothing", c.label_smoothing,
                  "label smoothing: train towards y (1 - this) + this / 2 instead of the labels 0 and 1 (e.g. 0.1; 0: off)")
      ->capture_default_str();
  cmd->add_option("--teacher", p->teachers,
                  "distillation: a checkpoint (or built-in model) whose probability for each training patch is blended "
                  "into its target; repeatable (their mean: an ensemble). Scored once, kept in RUN_DIR/teacher.csv")
      ->excludes("--resume");
  cmd->add_option("--teacher-weight", p->teacher_weight, "--teacher: each target is (1 - this) label + this teacher probability")
      ->capture_default_str();
  cmd->add_option("--teacher-tta", p->teacher_tta, "--teacher: dihedral views each teacher scores a patch in (1, 2, 4 or 8)")
      ->capture_default_str();
  cmd->add_option("--threads", p->threads, "CPU threads (0: all cores)")->capture_default_str();
  auto* amp = cmd->add_flag("--amp", c.amp,
                            "mixed precision: convolutions in bfloat16; weights, BatchNorm, the last layer and the loss in "
                            "float32 (faster on CPUs with AVX512-BF16/AMX and on recent GPUs). Default recipe: on where the "
                            "CPU has bfloat16 arithmetic and training runs on it");
  auto* no_amp = cmd->add_flag("--no-amp", "float32 throughout, even where the default recipe would use --amp")->excludes(amp);
  cmd->add_flag("--overwrite", p->overwrite, "write into an existing run folder");
  cmd->add_option("--model-option", p->model_options,
                  "KEY=VALUE for the network (e.g. dropout=0, batchnorm=false), over the recipe's own "
                  "(default recipe: resnet crop=" +
                      std::to_string(train::kDefaultCrop) + "); repeatable");
  cmd->add_option("--dist-url", p->dist_url,
                  "distributed training: tcp://HOST:PORT of rank 0 or file:///PATH (RANK and WORLD_SIZE from the "
                  "environment); default: torchrun's MASTER_ADDR/MASTER_PORT when RANK and WORLD_SIZE are set");
  cmd->add_flag("--sync-bn", c.sync_bn,
                "distributed training: BatchNorm statistics over the whole batch, all ranks (default: each rank's share, as "
                "PyTorch's DDP)");
  cmd->add_option("--dist-timeout", p->dist_timeout, "seconds a rank waits for the others before failing")->capture_default_str();
  cmd->add_flag(
      "--no-progress", [&c](std::int64_t) { c.progress = false; }, "no progress bar, one line per epoch");
  cmd->callback([p, cmd, amp, no_amp] {
    p->teacher_weight_given = cmd->get_option("--teacher-weight")->count() > 0;
    p->teacher_tta_given = cmd->get_option("--teacher-tta")->count() > 0;
    // The default recipe's --amp: where the CPU it trains on computes in bfloat16 (AMX, AVX512-BF16).
    if (p->resume.empty() && p->config.recipe == "default" && amp->count() == 0 && no_amp->count() == 0)
      p->config.amp = !predict::resolve_device(p->config.device).is_cuda() && model::cpu_has_bfloat16();
    // --recipe: its value for each flag not given (a resumed run takes all from its config.json).
    p->config = train::apply_recipe(p->config, [cmd](std::string key) {
      std::replace(key.begin(), key.end(), '_', '-');
      return cmd->get_option("--" + key)->count() > 0;
    });
    // The recipe's model options where it trains the recipe's network (default: resnet crop=96).
    p->config.model_options = train::recipe_model_options(p->config.recipe, p->config.model);
    run_train(*p);
  });
}

}  // namespace histoscan::cli
