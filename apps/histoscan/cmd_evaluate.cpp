// histoscan evaluate CHECKPOINT... DATA --out EVAL_DIR, and histoscan metrics PREDICTIONS.csv
#include <iostream>
#include <memory>

#include "commands.h"
#include "cutoff_flags.h"
#include "histoscan/interop/foreign_model.h"
#include "histoscan/model/builtin.h"
#include "histoscan/pipeline/evaluate.h"
#include "histoscan/util/atomic_file.h"
#include "histoscan/util/error.h"
#include "histoscan/util/log.h"

namespace histoscan::cli {

namespace {

struct EvaluateParams {
  std::vector<std::string> inputs;
  std::string out, labels;
  bool allow_missing = false, resize = false, overwrite = false, save_threshold = false, skip_bad = false;
  InferenceFlags inference;
  CutoffFlags cutoff;
};

// The checkpoints (or built-in models) to evaluate; with --save-threshold, only those histoscan may rewrite.
std::vector<model::Checkpoint> load_models(const std::vector<std::string>& paths, bool save_threshold) {
  std::vector<model::Checkpoint> checkpoints;
  for (const auto& path : paths) {
    checkpoints.push_back(model::load_checkpoint(path));
    if (save_threshold && model::is_builtin_file(model::resolve_model(path)))
      throw InputError("--save-threshold: " + path +
                       " is a built-in model, which histoscan does not rewrite; copy the file and give "
                       "the copy instead");
    if (save_threshold && interop::is_foreign(checkpoints.back().net))
      throw InputError("--save-threshold: " + path +
                       " is a model made elsewhere, which histoscan does not rewrite; give the threshold "
                       "to scan with --threshold instead");
  }
  return checkpoints;
}

// One model: its outputs in `out`; several: each in its own folder and their comparison in `out`.
void write_results(const fs::path& out, const std::vector<eval::ModelResult>& results, const data::PatchStore& store,
                   const std::string& source) {
  if (results.size() == 1) {
    eval::write_model_outputs(out, results[0], &store, source);
    std::cout << eval::format_summary(results[0].summary);
    return;
  }
  auto names = eval::result_folder_names(results);
  for (std::size_t i = 0; i < results.size(); ++i) {
    fs::path dir = out / names[i];
    fs::create_directories(dir);
    eval::write_model_outputs(dir, results[i], &store, source);
  }
  eval::write_comparison(out, results);
  std::cout << eval::format_comparison(results);
}

// --save-threshold: each model's chosen cut-off, with its rule and data, into its checkpoint.
void save_thresholds(const std::vector<std::string>& paths, const std::vector<eval::ModelResult>& results,
                     const std::string& source) {
  for (std::size_t i = 0; i < results.size(); ++i) {
    const auto& point = results[i].summary.point;
    model::save_threshold(paths[i], point.threshold,
                          {{"rule", point.rule},
                           {"target", std::isnan(point.target) ? nlohmann::json(nullptr) : nlohmann::json(point.target)},
                           {"data", source}});
    log::info("saved threshold " + format_number(point.threshold) + " (" + point.rule + ") into " + paths[i]);
  }
}

void run_evaluate(const EvaluateParams& p) {
  check_output_dir(p.out, p.overwrite, "--out");
  set_threads(p.inference.threads);
  std::vector<std::string> paths(p.inputs.begin(), p.inputs.end() - 1);
  if (paths.empty()) paths.push_back(default_checkpoint());
  auto checkpoints = load_models(paths, p.save_threshold);
  data::SourceOptions source;
  source.labels = p.labels;
  source.allow_missing = p.allow_missing;
  auto index = data::index_source(p.inputs.back(), source);
  data::LoadOptions load;
  load.threads = p.inference.threads;
  load.decode.resize = p.resize;
  load.skip_bad = p.skip_bad;
  std::vector<data::SkippedFile> skipped;
  auto store = data::load_all_patches(index, load, &skipped);

  eval::SummaryOptions options;
  bool cutoff_given = p.cutoff.request(options.cutoff);
  options.bootstrap = p.cutoff.bootstrap;
  options.seed = p.cutoff.seed;
  std::vector<eval::ModelResult> results;
  for (std::size_t i = 0; i < paths.size(); ++i)
    results.push_back(pipeline::evaluate_checkpoint(paths[i], checkpoints[i], store, p.inference.device, options, cutoff_given,
                                                    p.inference.batch, p.inference.views, p.inference.amp));

  prepare_output_dir(p.out, p.overwrite, "--out");
  if (!skipped.empty()) {
    data::write_skipped_csv(skipped, fs::path(p.out) / "skipped.csv");
    log::warn(std::to_string(skipped.size()) + " unreadable images left out; see " + p.out + "/skipped.csv");
  }
  write_results(p.out, results, store, index.describe());
  if (p.save_threshold) save_thresholds(paths, results, index.describe());
  log::info("wrote " + p.out + "/ (metrics.json, predictions.csv, plots, report.html)");
}

}  // namespace

void add_evaluate(CLI::App& app) {
  auto p = std::make_shared<EvaluateParams>();
  auto* cmd = app.add_subcommand(
      "evaluate",
      "metrics with 95% intervals, operating point, plots and report.html of one or more checkpoints on labelled data");
  cmd->add_option(
         "[CHECKPOINT...] DATA", p->inputs,
         "one or more checkpoints (best.pt) or built-in models' names (default: the built-in model, see 'histoscan models'), "
         "then the labelled patches (any DATA form)")
      ->required()
      ->expected(1, -1);
  cmd->add_option("-o,--out", p->out, "folder for metrics.json, predictions.csv, plots and report.html")->required();
  cmd->add_option("--labels", p->labels, "labels CSV for DATA");
  cmd->add_flag("--allow-missing", p->allow_missing, "evaluate the matched patches when files or labels are unmatched");
  cmd->add_flag("--resize", p->resize, "resize images that are not 96x96 instead of refusing them");
  cmd->add_flag("--skip-bad", p->skip_bad, "leave out unreadable images, listed in EVAL_DIR/skipped.csv");
  add_cutoff_flags(cmd, p->cutoff);
  cmd->add_flag("--save-threshold", p->save_threshold,
                "write the chosen cut-off into each checkpoint (predict --binary uses it)");
  add_inference_flags(cmd, p->inference, "patch");
  cmd->add_flag("--overwrite", p->overwrite, "write into an existing folder");
  cmd->callback([p] { run_evaluate(*p); });
}

void add_metrics(CLI::App& app) {
  struct Params {
    std::string predictions, out;
    bool json = false, overwrite = false;
    CutoffFlags cutoff;
  };
  auto p = std::make_shared<Params>();
  auto* cmd = app.add_subcommand("metrics", "the evaluation report from a predictions CSV (id,label,probability) of any tool");
  cmd->add_option("PREDICTIONS", p->predictions, "CSV with columns id, label (0/1) and probability")->required();
  cmd->add_option("-o,--out", p->out, "also write metrics.json, plots and report.html to this folder");
  add_cutoff_flags(cmd, p->cutoff);
  cmd->add_flag("--json", p->json, "print metrics.json instead of the text report");
  cmd->add_flag("--overwrite", p->overwrite, "write into an existing --out folder");
  cmd->callback([p] {
    if (!p->out.empty()) check_output_dir(p->out, p->overwrite, "--out");
    auto preds = eval::read_predictions_csv(p->predictions);
    eval::SummaryOptions options;
    p->cutoff.request(options.cutoff);
    options.bootstrap = p->cutoff.bootstrap;
    options.seed = p->cutoff.seed;
    eval::ModelResult r;
    r.name = p->predictions;
    r.ids = preds.ids;
    r.labels = preds.labels;
    r.probs = preds.probs;
    r.summary = eval::summarize(r.labels, r.probs, options);
    if (p->json) std::cout << eval::to_json(r.summary).dump(2) << '\n';
    else std::cout << eval::format_summary(r.summary);
    if (!p->out.empty()) {
      prepare_output_dir(p->out, p->overwrite, "--out");
      eval::write_model_outputs(p->out, r, nullptr, p->predictions);
      log::info("wrote " + p->out + "/ (metrics.json, predictions.csv, plots, report.html)");
    }
  });
}

}  // namespace histoscan::cli
