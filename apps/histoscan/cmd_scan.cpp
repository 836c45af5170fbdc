// histoscan scan [CHECKPOINT] SLIDE... --out DIR, and histoscan synth-slide (test slides).
#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "histoscan/cohort/cohort.h"
#include "histoscan/data/source.h"
#include "histoscan/data/stain.h"
#include "histoscan/dist/dist.h"
#include "histoscan/model/builtin.h"
#include "histoscan/model/checkpoint.h"
#include "histoscan/predict/predictor.h"
#include "histoscan/scan/cohort_scan.h"
#include "histoscan/scan/scanner.h"
#include "histoscan/slide/synth_slide.h"
#include "histoscan/util/atomic_file.h"
#include "histoscan/util/error.h"
#include "histoscan/util/log.h"
#include "histoscan/util/progress.h"

namespace histoscan::cli {

namespace {

struct ScanParams {
  std::string checkpoint, out, dist_url;
  std::vector<std::string> inputs;
  double threshold = -1, dist_timeout = 3600;
  InferenceFlags inference;  // --batch, --tta and --amp go into scan
  bool no_progress = false, rescan = false;
  CLI::Option* mpp = nullptr;  // --mpp; when not given, a model made elsewhere's spacing_um_px
  scan::ScanOptions scan;
};

// What makes one slide's outputs comparable with another's: a cohort re-run must match it.
nlohmann::json cohort_settings(const ScanParams& p) {
  const auto& o = p.scan;
  std::error_code ec;
  // A WSInfer model folder's size is its TorchScript file's.
  const fs::path model_file =
      fs::is_directory(p.checkpoint) ? fs::path(p.checkpoint) / "torchscript_model.pt" : fs::path(p.checkpoint);
  return {{"checkpoint", fs::absolute(p.checkpoint).string()},
          {"checkpoint_bytes", fs::file_size(model_file, ec)},
          {"target_mpp", o.target_mpp},
          {"slide_mpp", o.slide_mpp},
          {"level", o.level},
          {"stride", o.stride},
          {"min_tissue", o.min_tissue},
          {"tissue_threshold", o.tissue_threshold},
          {"threshold", o.threshold},
          {"smooth", o.smooth},
          {"top_k", o.top_k},
          {"thumbnail", o.thumbnail},
          // false and true as before --tta took a count (a cohort scanned then resumes), else the count
          {"tta", o.views == 1   ? nlohmann::json(false)
                  : o.views == 8 ? nlohmann::json(true)
                                 : nlohmann::json(o.views)},
          {"amp", o.amp}};
}

// The checkpoint, with p.scan completed from it and the flags (threshold, progress) and checked.
model::Checkpoint load_for_scan(ScanParams& p) {
  set_threads(p.inference.threads);
  p.scan.batch = p.inference.batch;
  p.scan.views = p.inference.views;
  p.scan.amp = p.inference.amp;
  auto checkpoint = model::load_checkpoint(p.checkpoint);
  p.scan.threshold = p.threshold >= 0 ? p.threshold : model::saved_threshold(checkpoint.meta);
  p.scan.stain = data::stain_of_model(checkpoint.meta, p.checkpoint);
  if (p.mpp && p.mpp->count() == 0 && checkpoint.meta.contains("patch_mpp"))
    p.scan.target_mpp = checkpoint.meta["patch_mpp"].get<double>();
  p.scan.progress = !p.no_progress;
  slide::check_scan_options(p.scan);
  return checkpoint;
}

void scan_one(ScanParams& p) {
  check_output_dir(p.out, p.scan.overwrite, "--out");
  auto checkpoint = load_for_scan(p);
  auto device = predict::prepare_inference(checkpoint.net, p.inference.device, p.scan.amp);
  auto s = scan::scan_slide(checkpoint.net, device, p.inputs[0], p.out, p.scan);
  log::info(slide::describe_scan(s));
  log::info("wrote heatmap.png, tissue.png, tiles.csv, tumour.geojson, summary.json to " + p.out);
}

// Many slides: each into OUT/slides/NAME, then the cohort's table (scan::scan_cohort), in one
// process or as one rank of a job (RANK, WORLD_SIZE).
void scan_cohort(ScanParams& p) {
  auto slides = cohort::collect_slides(p.inputs);  // every input checked before anything is written
  if (!(p.dist_timeout > 0))
    throw InputError("--dist-timeout " + format_number(p.dist_timeout) + " must be a positive number of seconds");
  auto checkpoint = load_for_scan(p);
  auto launch = dist::launch_from_environment(p.dist_url);
  std::unique_ptr<dist::Group> group;
  if (launch) {
    group = std::make_unique<dist::Group>(*launch, p.dist_timeout);
    log::info("cohort across " + std::to_string(group->size()) + " ranks: " + launch->describe());
  }
  auto device = predict::prepare_inference(checkpoint.net, p.inference.device, p.scan.amp);
  scan::CohortScanOptions c{p.out, cohort_settings(p), p.rescan, p.scan.overwrite};
  auto r = scan::scan_cohort(checkpoint.net, device, slides, p.scan, c, group.get());
  if (!r.outcome) return;  // a rank other than 0: rank 0 writes the table and says how it went
  const auto& t = r.tally;
  const auto& outcome = *r.outcome;
  log::info("cohort of " + std::to_string(slides.size()) + " slides: " + std::to_string(outcome.ok) + " scanned, " +
            std::to_string(outcome.failed) + " failed, " + std::to_string(outcome.tumour) + " called tumour (" +
            (group ? "rank 0 " : "this run ") + "scanned " + std::to_string(t.scanned) + ", skipped " +
            std::to_string(t.skipped) + " done before, " + std::to_string(t.failed) +
            " failed); wrote cohort.csv, failures.csv, cohort.html" + (outcome.metrics ? ", metrics/" : "") +
            (outcome.froc >= 0 ? ", lesions.json (FROC " + format_number(outcome.froc) + ")" : "") + " to " + p.out);
  if (outcome.failed)
    throw SomeFailed(std::to_string(outcome.failed) + " of " + std::to_string(slides.size()) + " slides failed; see " +
                     (fs::path(p.out) / "failures.csv").string() + ", fix them and run the same command again");
}

}  // namespace

void add_scan(CLI::App& app) {
  auto p = std::make_shared<ScanParams>();
  auto* cmd = app.add_subcommand(
      "scan",
      "tumour heatmaps of whole slides: one slide into --out (heatmap.png, tissue.png, tiles.csv, tumour.geojson, "
      "summary.json), or a cohort of slides into --out/slides/NAME with cohort.csv and cohort.html");
  cmd->add_option(
         "[CHECKPOINT] INPUT", p->inputs,
         "best.pt of a run, a WSInfer folder or a built-in model's name (default: the built-in model, see 'histoscan models'); "
         "then a slide OpenSlide reads (.svs .tif .ndpi .mrxs ...) or a plain PNG/JPEG/TIFF; or several, folders of slides, or "
         "manifest CSVs (slide[,label][,mpp][,annotations]), which make a cohort")
      ->required();
  cmd->add_option("-o,--out", p->out, "folder for the outputs")->required();
  auto& o = p->scan;
  p->mpp =
      cmd->add_option(
             "--mpp", o.target_mpp,
             "microns per pixel the network was trained at (PCam: 0.972; a TorchScript model: its config.json's spacing_um_px)")
          ->capture_default_str();
  cmd->add_option("--slide-mpp", o.slide_mpp, "microns per pixel of the slide's level 0, when the file lacks or misstates it");
  cmd->add_option("--level", o.level, "pyramid level to read (default: the one matching --mpp)");
  cmd->add_option("--stride", o.stride, "pixels between tiles at --mpp; 32 covers tissue with the tiles' labelled centres")
      ->capture_default_str();
  cmd->add_option("--min-tissue", o.min_tissue, "score tiles at least this fraction tissue")->capture_default_str();
  cmd->add_option("--tissue-threshold", o.tissue_threshold,
                  "HSV saturation (0-255) above which a thumbnail pixel is tissue (default: 15 above the glass's, at least 20)");
  cmd->add_option("--threshold", p->threshold, "tumour at probability >= this (default: the checkpoint's threshold)");
  cmd->add_option("--smooth", o.smooth,
                  "heatmap and regions average each tile with its neighbours this many tiles away (0: none)")
      ->capture_default_str();
  cmd->add_option("--top-k", o.top_k, "slide call on the mean of the k most likely tiles")->capture_default_str();
  cmd->add_option("--readers", o.readers, "threads reading the slide")->capture_default_str();
  cmd->add_option("--thumbnail", o.thumbnail, "longer side of the thumbnail behind the heatmap, pixels")->capture_default_str();
  p->inference.batch = o.batch;
  add_inference_flags(cmd, p->inference, "tile");
  cmd->add_flag("--no-progress", p->no_progress, "no progress bar");
  cmd->add_flag("--overwrite", o.overwrite, "write into an existing, non-empty --out");
  cmd->add_flag("--rescan", p->rescan, "cohort: scan every slide again, also those done before (default: a re-run skips them)");
  cmd->add_option("--dist-url", p->dist_url,
                  "cohort across processes: tcp://HOST:PORT of rank 0 or file:///PATH (RANK and WORLD_SIZE from the environment, "
                  "as torchrun and Slurm set them)");
  cmd->add_option("--dist-timeout", p->dist_timeout, "cohort across processes: seconds a rank waits for the others")
      ->capture_default_str();
  cmd->callback([p] {
    // The first argument is the model when it names one (a .pt file, a WSInfer folder, a built-in
    // model's name); otherwise every argument is a slide and the built-in model scores them.
    if (names_a_model(p->inputs.front())) {
      const std::string given = p->inputs.front();
      p->inputs.erase(p->inputs.begin());
      if (p->inputs.empty())
        throw InputError("scan " + given + ": no slides given; give one or more slides, folders or manifests after the model");
      p->checkpoint = model::resolve_model(given);
    } else {
      p->checkpoint = default_checkpoint();
    }
    if (cohort::is_single_slide(p->inputs)) scan_one(*p);
    else scan_cohort(*p);
  });
}

void add_synth_slide(CLI::App& app) {
  struct Params {
    std::string data, out;
    std::vector<int> tumour{13, 5, 8, 6};
    slide::SynthSlideSpec spec;
    bool overwrite = false;
  };
  auto p = std::make_shared<Params>();
  auto* cmd = app.add_subcommand(
      "synth-slide", "write a pyramidal TIFF test slide from labelled patches, with its tumour region in OUT.truth.json");
  cmd->add_option("OUT", p->out, "slide to write (.tif)")->required();
  cmd->add_option("--from", p->data, "labelled patches (any DATA form); default: synthetic patches");
  cmd->add_option("--cols", p->spec.cols, "mosaic width, patches")->capture_default_str();
  cmd->add_option("--rows", p->spec.rows, "mosaic height, patches")->capture_default_str();
  cmd->add_option("--tumour", p->tumour, "tumour block: column,row,width,height in patches")
      ->delimiter(',')
      ->expected(4)
      ->capture_default_str();
  cmd->add_option("--slide-mpp", p->spec.slide_mpp, "microns per pixel of level 0 (patches are 0.972)")->capture_default_str();
  cmd->add_option("--width", p->spec.width, "level-0 canvas width, pixels (default: the mosaic plus a margin)");
  cmd->add_option("--height", p->spec.height, "level-0 canvas height, pixels");
  cmd->add_option("--seed", p->spec.seed, "which patches go where")->capture_default_str();
  cmd->add_flag("--overwrite", p->overwrite, "replace OUT if it exists");
  cmd->callback([p] {
    check_output_file(p->out, p->overwrite, "OUT");
    p->spec.tumour = cv::Rect(p->tumour[0], p->tumour[1], p->tumour[2], p->tumour[3]);
    std::unique_ptr<data::PatchIndex> index;
    if (!p->data.empty()) index = std::make_unique<data::PatchIndex>(data::index_source(p->data));
    auto truth = slide::write_synth_slide(p->out, index.get(), p->spec);
    fs::path truth_path = fs::path(p->out).replace_extension(".truth.json");
    write_file_atomic(truth_path, [&](std::ostream& f) { f << truth.dump(2) << '\n'; });
    log::info("wrote " + p->out + " (" + std::to_string(truth["width"].get<std::int64_t>()) + "x" +
              std::to_string(truth["height"].get<std::int64_t>()) + " at " + format_number(p->spec.slide_mpp) + " µm/px) and " +
              truth_path.string());
  });
}

}  // namespace histoscan::cli
