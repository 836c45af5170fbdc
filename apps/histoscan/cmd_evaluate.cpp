// histoscan evaluate CHECKPOINT DATA --out EVAL_DIR
#include <iostream>
#include <memory>

#include "commands.h"
#include "histoscan/eval/evaluate.h"
#include "histoscan/util/atomic_file.h"
#include "histoscan/util/error.h"
#include "histoscan/util/log.h"

namespace histoscan::cli {

void add_evaluate(CLI::App& app) {
  struct Params {
    std::string checkpoint, data, out, labels, device = "auto";
    bool allow_missing = false, resize = false, overwrite = false;
    int threads = 0, batch = 256;
  };
  auto p = std::make_shared<Params>();
  auto* cmd = app.add_subcommand("evaluate", "classification report, confusion matrix and ROC AUC of a checkpoint on labelled data");
  cmd->add_option("CHECKPOINT", p->checkpoint, "best.pt or last.pt of a run")->required();
  cmd->add_option("DATA", p->data, "labelled patches (any DATA form)")->required();
  cmd->add_option("-o,--out", p->out, "folder for metrics.json and predictions.csv")->required();
  cmd->add_option("--labels", p->labels, "labels CSV for DATA");
  cmd->add_flag("--allow-missing", p->allow_missing, "evaluate the matched patches when files or labels are unmatched");
  cmd->add_flag("--resize", p->resize, "resize images that are not 96x96 instead of refusing them");
  cmd->add_option("--batch", p->batch, "batch size")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--threads", p->threads, "CPU threads (0: all cores)")->capture_default_str();
  cmd->add_option("--device", p->device, "auto, cpu or cuda")->capture_default_str();
  cmd->add_flag("--overwrite", p->overwrite, "write into an existing folder");
  cmd->callback([p] {
    if (fs::exists(p->out) && !p->overwrite && !(fs::is_directory(p->out) && fs::is_empty(p->out)))
      throw InputError("--out " + p->out + " exists; pass --overwrite to replace its results or choose another folder");
    set_threads(p->threads);
    auto checkpoint = model::load_checkpoint(p->checkpoint);
    data::SourceOptions source;
    source.labels = p->labels;
    source.allow_missing = p->allow_missing;
    auto index = data::index_source(p->data, source);
    data::LoadOptions load;
    load.threads = p->threads;
    load.decode.resize = p->resize;
    auto store = data::load_all_patches(index, load);
    auto evaluation = eval::evaluate_store(checkpoint, store, p->device, p->batch);
    prepare_output_dir(p->out, p->overwrite, "--out");
    eval::write_evaluation(evaluation, p->out, {{"checkpoint", p->checkpoint}, {"data", index.describe()}});
    std::cout << eval::format_evaluation(evaluation);
    log::info("wrote " + p->out + "/metrics.json and " + p->out + "/predictions.csv");
  });
}

}  // namespace histoscan::cli
