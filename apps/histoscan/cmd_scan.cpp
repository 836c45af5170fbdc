// histoscan scan CHECKPOINT SLIDE --out DIR, and histoscan synth-slide (test slides).
#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "histoscan/data/source.h"
#include "histoscan/model/checkpoint.h"
#include "histoscan/predict/predictor.h"
#include "histoscan/scan/scanner.h"
#include "histoscan/slide/test_slide.h"
#include "histoscan/util/atomic_file.h"
#include "histoscan/util/error.h"
#include "histoscan/util/log.h"
#include "histoscan/util/progress.h"

namespace histoscan::cli {

void add_scan(CLI::App& app) {
  struct Params {
    std::string checkpoint, slide, out, device = "auto";
    double threshold = -1;
    int threads = 0;
    bool no_progress = false;
    scan::ScanOptions scan;
  };
  auto p = std::make_shared<Params>();
  auto* cmd = app.add_subcommand("scan", "tumour heatmap of a whole slide: heatmap.png, tiles.csv, tumour.geojson, summary.json");
  cmd->add_option("CHECKPOINT", p->checkpoint, "best.pt of a run")->required();
  cmd->add_option("SLIDE", p->slide, "a slide OpenSlide reads (.svs .tif .ndpi .mrxs ...) or a plain PNG/JPEG/TIFF")->required();
  cmd->add_option("-o,--out", p->out, "folder for the outputs")->required();
  cmd->add_option("--mpp", p->scan.target_mpp, "microns per pixel the network was trained at (PCam: 0.972)")->capture_default_str();
  cmd->add_option("--slide-mpp", p->scan.slide_mpp, "microns per pixel of the slide's level 0, when the file lacks or misstates it");
  cmd->add_option("--level", p->scan.level, "pyramid level to read (default: the one matching --mpp)");
  cmd->add_option("--stride", p->scan.stride, "pixels between tiles at --mpp; 32 covers tissue with the tiles' labelled centres")
      ->capture_default_str();
  cmd->add_option("--min-tissue", p->scan.min_tissue, "score tiles at least this fraction tissue")->capture_default_str();
  cmd->add_option("--threshold", p->threshold, "tumour at probability >= this (default: the checkpoint's threshold)");
  cmd->add_option("--smooth", p->scan.smooth, "heatmap and regions average each tile with its neighbours this many tiles away (0: none)")
      ->capture_default_str();
  cmd->add_option("--top-k", p->scan.top_k, "slide call on the mean of the k most likely tiles")->capture_default_str();
  cmd->add_option("--batch", p->scan.batch, "batch size")->capture_default_str();
  cmd->add_option("--readers", p->scan.readers, "threads reading the slide")->capture_default_str();
  cmd->add_option("--thumbnail", p->scan.thumbnail, "longer side of the thumbnail behind the heatmap, pixels")->capture_default_str();
  cmd->add_option("--threads", p->threads, "CPU threads for the network (0: all cores)")->capture_default_str();
  cmd->add_option("--device", p->device, "auto, cpu or cuda")->capture_default_str();
  cmd->add_flag("--tta", p->scan.tta, "score each tile in its 8 dihedral views (rotations, mirrors) and average; 8x the time");
  cmd->add_flag("--amp", p->scan.amp, "score in bfloat16 (faster on recent GPUs and on CPUs with AMX, slower on CPUs without; probabilities within about 0.01)");
  cmd->add_flag("--no-progress", p->no_progress, "no progress bar");
  cmd->add_flag("--overwrite", p->scan.overwrite, "write into an existing, non-empty --out");
  cmd->callback([p] {
    if (fs::exists(p->out) && fs::is_directory(p->out) && !fs::is_empty(p->out) && !p->scan.overwrite)
      throw InputError("--out " + p->out + " exists and is not empty; pass --overwrite to write into it or choose another folder");
    set_threads(p->threads);
    auto checkpoint = model::load_checkpoint(p->checkpoint);
    p->scan.threshold = p->threshold >= 0 ? p->threshold : checkpoint.meta.value("threshold", 0.5);
    if (p->scan.threshold > 1) throw InputError("--threshold: must be between 0 and 1");
    p->scan.progress = !p->no_progress;
    auto device = predict::prepare_inference(checkpoint.net, p->device, p->scan.amp);
    auto s = scan::scan_slide(checkpoint.net, device, p->slide, p->out, p->scan);
    char line[256];
    std::snprintf(line, sizeof line, "%zu tiles in %.1f s (%.0f tiles/s); tissue %.2f mm², tumour %.2f mm² in %zu regions; ",
                  s["tiles_scored"].get<std::size_t>(), s["scan_seconds"].get<double>(), s["tiles_per_second"].get<double>(),
                  s["tissue_area_mm2"].get<double>(), s["tumour_area_mm2"].get<double>(), s["tumour_regions"].get<std::size_t>());
    std::snprintf(line + std::strlen(line), sizeof line - std::strlen(line), "max p %.3f, top-%zu mean %.3f: %s",
                  s["max_probability"].get<double>(), s["top_k"].get<std::size_t>(), s["top_k_mean_probability"].get<double>(),
                  s["call"].get<std::string>().c_str());
    log::info(line);
    log::info("wrote heatmap.png, tiles.csv, tumour.geojson, summary.json to " + p->out);
  });
}

void add_synth_slide(CLI::App& app) {
  struct Params {
    std::string data, out;
    std::vector<int> tumour{13, 5, 8, 6};
    slide::TestSlideSpec spec;
    bool overwrite = false;
  };
  auto p = std::make_shared<Params>();
  auto* cmd = app.add_subcommand("synth-slide",
                                 "write a pyramidal TIFF test slide from labelled patches, with its tumour region in OUT.truth.json");
  cmd->add_option("OUT", p->out, "slide to write (.tif)")->required();
  cmd->add_option("--from", p->data, "labelled patches (any DATA form); default: synthetic patches");
  cmd->add_option("--cols", p->spec.cols, "mosaic width, patches")->capture_default_str();
  cmd->add_option("--rows", p->spec.rows, "mosaic height, patches")->capture_default_str();
  cmd->add_option("--tumour", p->tumour, "tumour block: column,row,width,height in patches")->delimiter(',')->expected(4)->capture_default_str();
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
    auto truth = slide::write_test_slide(p->out, index.get(), p->spec);
    fs::path truth_path = fs::path(p->out).replace_extension(".truth.json");
    write_file_atomic(truth_path, [&](std::ostream& f) { f << truth.dump(2) << '\n'; });
    log::info("wrote " + p->out + " (" + std::to_string(truth["width"].get<std::int64_t>()) + "x" +
              std::to_string(truth["height"].get<std::int64_t>()) + " at " + format_number(p->spec.slide_mpp) +
              " µm/px) and " + truth_path.string());
  });
}

}  // namespace histoscan::cli
