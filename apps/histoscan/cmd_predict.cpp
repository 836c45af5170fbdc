// histoscan predict [CHECKPOINT] DIR --out submission.csv
#include <iostream>
#include <memory>

#include "commands.h"
#include "histoscan/data/stain.h"
#include "histoscan/model/checkpoint.h"
#include "histoscan/pipeline/predict_stream.h"
#include "histoscan/predict/predictor.h"
#include "histoscan/util/atomic_file.h"
#include "histoscan/util/error.h"
#include "histoscan/util/log.h"

namespace histoscan::cli {

void add_predict(CLI::App& app) {
  struct Params {
    std::vector<std::string> inputs;
    std::string out = "submission.csv";
    bool overwrite = false, binary = false;
    InferenceFlags inference;
    pipeline::StreamOptions stream;
  };
  auto p = std::make_shared<Params>();
  auto* cmd = app.add_subcommand("predict", "tumour probability of every patch, as Kaggle's submission.csv (id,label)");
  cmd->add_option(
         "[CHECKPOINT] DIR", p->inputs,
         "best.pt of a run or a built-in model's name (default: the built-in model, see 'histoscan models'), then a folder of "
         "patches (Kaggle's test/) or any DATA form")
      ->required()
      ->expected(1, 2);
  cmd->add_option("-o,--out", p->out, "CSV to write")->capture_default_str();
  p->inference.batch = p->stream.batch;
  add_inference_flags(cmd, p->inference, "patch");
  cmd->add_flag("--resize", p->stream.decode.resize, "resize images that are not 96x96 instead of refusing them");
  cmd->add_flag("--skip-bad", p->stream.skip_bad, "leave out unreadable images, listed in OUT.skipped.csv");
  cmd->add_flag("--binary", p->binary, "write 0/1 labels at the checkpoint's threshold (see evaluate --save-threshold)");
  cmd->add_flag("--overwrite", p->overwrite, "replace --out if it exists");
  cmd->callback([p] {
    check_output_file(p->out, p->overwrite, "--out");
    set_threads(p->inference.threads);
    p->stream.threads = p->inference.threads;
    p->stream.batch = p->inference.batch;
    p->stream.views = p->inference.views;
    p->stream.amp = p->inference.amp;
    const std::string checkpoint_path = p->inputs.size() == 2 ? p->inputs[0] : default_checkpoint();
    auto checkpoint = model::load_checkpoint(checkpoint_path);
    p->stream.stain = data::stain_of_model(checkpoint.meta, checkpoint_path);
    if (p->binary) {
      p->stream.binary_threshold = model::saved_threshold(checkpoint.meta);
      log::info("labels at threshold " + format_number(p->stream.binary_threshold) + " from " + checkpoint_path);
    }
    data::SourceOptions source;
    source.require_labels = false;
    auto index = data::index_source(p->inputs.back(), source);
    auto device = predict::prepare_inference(checkpoint.net, p->inference.device, p->stream.amp);
    auto result = pipeline::predict_to_csv(checkpoint.net, index, p->out, device, p->stream);
    if (!result.skipped.empty()) {
      data::write_skipped_csv(result.skipped, p->out + ".skipped.csv");
      log::warn(std::to_string(result.skipped.size()) + " unreadable images left out; see " + p->out + ".skipped.csv");
    }
    char buf[64];
    std::snprintf(buf, sizeof buf, " (%.0f images/s)", double(result.images) / result.seconds);
    log::info("wrote " + std::to_string(result.images) + " predictions to " + p->out + buf);
  });
}

}  // namespace histoscan::cli
