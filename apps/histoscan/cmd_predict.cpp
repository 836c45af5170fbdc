// histoscan predict [CHECKPOINT] DIR --out submission.csv
#include <iostream>
#include <memory>

#include "commands.h"
#include "histoscan/model/checkpoint.h"
#include "histoscan/predict/predictor.h"
#include "histoscan/util/atomic_file.h"
#include "histoscan/util/error.h"
#include "histoscan/util/log.h"

namespace histoscan::cli {

void add_predict(CLI::App& app) {
  struct Params {
    std::vector<std::string> inputs;
    std::string out = "submission.csv", device = "auto";
    bool overwrite = false, binary = false;
    int threads = 0;
    predict::StreamOptions stream;
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
  cmd->add_option("--batch", p->stream.batch, "batch size")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--threads", p->threads, "CPU threads (0: all cores)")->capture_default_str();
  cmd->add_option("--device", p->device, "auto, cpu or cuda")->capture_default_str();
  cmd->add_flag("--resize", p->stream.decode.resize, "resize images that are not 96x96 instead of refusing them");
  cmd->add_flag("--skip-bad", p->stream.skip_bad, "leave out unreadable images, listed in OUT.skipped.csv");
  cmd->add_flag("--tta", p->stream.tta, "score each patch in its 8 dihedral views (rotations, mirrors) and average; 8x the time");
  cmd->add_flag(
      "--amp", p->stream.amp,
      "score in bfloat16 (faster on recent GPUs and on CPUs with AMX, slower on CPUs without; probabilities within about 0.01)");
  cmd->add_flag("--binary", p->binary, "write 0/1 labels at the checkpoint's threshold (see evaluate --save-threshold)");
  cmd->add_flag("--overwrite", p->overwrite, "replace --out if it exists");
  cmd->callback([p] {
    check_output_file(p->out, p->overwrite, "--out");
    set_threads(p->threads);
    p->stream.threads = p->threads;
    const std::string checkpoint_path = p->inputs.size() == 2 ? p->inputs[0] : default_checkpoint();
    auto checkpoint = model::load_checkpoint(checkpoint_path);
    if (p->binary) {
      p->stream.binary_threshold = model::saved_threshold(checkpoint.meta);
      log::info("labels at threshold " + format_number(p->stream.binary_threshold) + " from " + checkpoint_path);
    }
    data::SourceOptions source;
    source.require_labels = false;
    auto index = data::index_source(p->inputs.back(), source);
    auto device = predict::prepare_inference(checkpoint.net, p->device, p->stream.amp);
    auto result = predict::predict_to_csv(checkpoint.net, index, p->out, device, p->stream);
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
