// histoscan export CHECKPOINT --out PATH [--format torchscript|wsinfer|onnx]
#include <cstdio>
#include <memory>

#include "commands.h"
#include "histoscan/interop/export.h"
#include "histoscan/util/log.h"

namespace histoscan::cli {

void add_export(CLI::App& app) {
  struct Params {
    std::string checkpoint, out, format = "auto";
    int threads = 0;
    interop::ExportOptions options;
  };
  auto p = std::make_shared<Params>();
  auto* cmd = app.add_subcommand(
      "export", "a checkpoint as a model PyTorch, QuPath/WSInfer or ONNX runtimes (OpenCV DNN) run without histoscan");
  cmd->add_option("CHECKPOINT", p->checkpoint, "best.pt or last.pt of a run")->required();
  cmd->add_option("-o,--out", p->out, "file (torchscript: .pt, onnx: .onnx) or folder (wsinfer) to write")->required();
  cmd->add_option(
         "--format", p->format,
         "torchscript (forward: RGB batch -> tumour probabilities), wsinfer (folder: torchscript_model.pt + config.json, "
         "for WSInfer and QuPath), onnx (opset 13), or auto (from --out: .onnx, .pt, else a wsinfer folder)")
      ->capture_default_str();
  add_tta_flag(cmd, p->options.views,
               "fold N dihedral views into the model, as scoring's --tta does (N times the work per patch; torchscript and "
               "wsinfer): --tta all 8, --tta=2 the patch and its mirror, --tta=4 also the half turn");
  cmd->add_option("--mpp", p->options.mpp, "micrometres per pixel of the training patches (wsinfer's spacing_um_px; PCam: 0.972)")
      ->capture_default_str();
  cmd->add_option("--threads", p->threads, "CPU threads (0: all cores)")->capture_default_str();
  cmd->add_flag("--overwrite", p->options.overwrite, "replace --out if it exists");
  cmd->callback([p] {
    set_threads(p->threads);
    p->options.format = interop::parse_export_format(p->format, p->out);
    auto r = interop::export_model(p->checkpoint, p->out, p->options);
    char diff[32];
    std::snprintf(diff, sizeof diff, "%.1e", r.max_difference);
    log::info("wrote " + r.written.string() + " (" + interop::format_name(p->options.format) +
              (p->options.views > 1 ? ", " + std::to_string(p->options.views) + " views" : "") + "): input " + r.input +
              "; output " + r.output);
    log::info("checked: on " + std::to_string(r.checked) + " synthetic patches its probabilities are within " + diff +
              " of histoscan's");
  });
}

}  // namespace histoscan::cli
