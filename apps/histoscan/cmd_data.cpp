// inspect, pack, synth, models: the data commands.
#include <cstdio>
#include <iostream>
#include <memory>

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "histoscan/data/inspect.h"
#include "histoscan/data/store.h"
#include "histoscan/data/synth.h"
#include "histoscan/model/builtin.h"
#include "histoscan/model/registry.h"
#include "histoscan/model/symmetry.h"
#include "histoscan/train/trainer.h"
#include "histoscan/util/atomic_file.h"
#include "histoscan/util/log.h"
#include "histoscan/util/parallel.h"

namespace histoscan::cli {

void add_inspect(CLI::App& app) {
  struct Params {
    std::string data, labels;
    bool json = false;
    int threads = 0;
  };
  auto p = std::make_shared<Params>();
  auto* cmd = app.add_subcommand("inspect", "count patches per class, find missing labels, unreadable files and odd sizes");
  cmd->add_option("DATA", p->data, "Kaggle folder (+ train_labels.csv), class folders 0/ 1/, or a PCam/packed .h5")->required();
  cmd->add_option("--labels", p->labels, "labels CSV (id,label); default: train_labels.csv in or beside DATA");
  cmd->add_flag("--json", p->json, "print JSON for scripts instead of the summary");
  cmd->add_option("--threads", p->threads, "decode threads (0: all cores)")->check(CLI::NonNegativeNumber);
  cmd->callback([p] {
    data::SourceOptions opts;
    opts.labels = p->labels;
    auto report = data::inspect_source(p->data, opts, p->threads);
    if (p->json) std::cout << data::to_json(report).dump(2) << '\n';
    else std::cout << data::format_report(report);
  });
}

void add_pack(CLI::App& app) {
  struct Params {
    std::string data, out, labels;
    bool allow_missing = false, resize = false, overwrite = false, skip_bad = false;
    int threads = 0;
  };
  auto p = std::make_shared<Params>();
  auto* cmd = app.add_subcommand("pack", "decode every patch once into an HDF5 store in PCam's layout (x, y) plus ids");
  cmd->add_option("DATA", p->data, "patches to pack (any DATA form)")->required();
  cmd->add_option("OUT", p->out, "the .h5 file to write")->required();
  cmd->add_option("--labels", p->labels, "labels CSV (id,label)");
  cmd->add_flag("--allow-missing", p->allow_missing, "pack the matched files when some files or labels are unmatched");
  cmd->add_flag("--resize", p->resize, "resize images that are not 96x96 instead of refusing them");
  cmd->add_flag("--skip-bad", p->skip_bad, "leave out unreadable images, listed in OUT.skipped.csv");
  cmd->add_flag("--overwrite", p->overwrite, "replace OUT if it exists");
  cmd->add_option("--threads", p->threads, "decode threads (0: all cores)")->check(CLI::NonNegativeNumber);
  cmd->callback([p] {
    check_output_file(p->out, p->overwrite, "OUT");
    data::SourceOptions opts;
    opts.labels = p->labels;
    opts.allow_missing = p->allow_missing;
    opts.require_labels = false;
    auto index = data::index_source(p->data, opts);
    data::LoadOptions load;
    load.threads = p->threads;
    load.decode.resize = p->resize;
    load.skip_bad = p->skip_bad;
    std::vector<data::SkippedFile> skipped;
    auto store = data::load_all_patches(index, load, &skipped);
    data::write_packed(store, p->out);
    if (!skipped.empty()) {
      data::write_skipped_csv(skipped, p->out + ".skipped.csv");
      log::warn(std::to_string(skipped.size()) + " unreadable images left out; see " + p->out + ".skipped.csv");
    }
    log::info("packed " + std::to_string(store.size()) + " patches from " + index.describe() + " into " + p->out);
  });
}

void add_synth(CLI::App& app) {
  auto p = std::make_shared<data::SynthOptions>();
  auto dir = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand("synth", "write a small synthetic dataset in Kaggle's layout (the built-in default)");
  cmd->add_option("DIR", *dir, "folder to create: DIR/train/*.tif, DIR/train_labels.csv, DIR/test/*.tif")->required();
  cmd->add_option("--train", p->train, "labelled training patches")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--test", p->test, "unlabelled test patches")->capture_default_str();
  cmd->add_option("--positive-fraction", p->positive_fraction, "share of tumour patches")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--seed", p->seed, "random seed")->capture_default_str();
  cmd->add_flag("--overwrite", p->overwrite, "replace DIR if it exists");
  cmd->callback([p, dir] {
    data::write_synthetic_dataset(*dir, *p);
    log::info("wrote " + std::to_string(p->train) + " training and " + std::to_string(p->test) + " test patches to " + *dir);
  });
}

// The trained models that ship with histoscan (models/models.json), the default first.
static void print_builtin_models() {
  const auto models = model::builtin_models();
  if (models.empty()) {
    std::cout << "built-in models: none (" << (model::models_dir() / "models.json").string() << " is missing)\n";
    return;
  }
  std::cout << "built-in models (a name works wherever a checkpoint does; predict, evaluate and scan use " << models.front().name
            << " when no checkpoint is given):\n";
  for (const auto& m : models) {
    const auto& c = m.card;
    std::cout << m.name << "  " << m.path.string() << (std::filesystem::exists(m.path) ? "" : " (missing)") << "  "
              << c.value("description", "") << '\n';
    if (c.contains("metrics"))
      for (const auto& [data, v] : c["metrics"].items()) {
        char buf[96];
        std::snprintf(buf, sizeof buf, "AUC %.4f, accuracy %.4f", v.value("auc", 0.0), v.value("accuracy", 0.0));
        std::cout << "    " << data << ": " << buf << " (" << v.value("data", "") << ")\n";
      }
    if (c.contains("command")) std::cout << "    trained with: " << c["command"].get<std::string>() << '\n';
  }
}

void add_models(CLI::App& app) {
  auto* cmd = app.add_subcommand("models", "list the networks --model accepts with their sizes, and the built-in trained models");
  struct Params {
    std::string model;
    std::vector<std::string> options;
  };
  auto p = std::make_shared<Params>();
  cmd->add_option("--model", p->model, "only this network");
  cmd->add_option("--model-option", p->options, "KEY=VALUE for --model, as train takes it; repeatable")->needs("--model");
  cmd->callback([p] {
    // The description is the network's defaults; with --model-option the sizes are the
    // options' and the line says which.
    auto print = [](const model::ModelInfo& m, torch::nn::Sequential net, const std::vector<std::string>& options) {
      char flops[32];
      std::snprintf(flops, sizeof flops, "%.4f", model::flops_per_patch(net) / 1e9);
      std::cout << m.name << "  (" << model::count_parameters(*net) << " parameters, " << flops << " GFLOP per patch)  "
                << m.description;
      if (!options.empty()) {
        std::cout << " [defaults; the sizes are with";
        for (const auto& o : options) std::cout << ' ' << o;
        std::cout << ']';
      }
      std::cout << '\n';
    };
    if (p->model.empty()) {
      for (const auto& m : model::list_models()) print(m, model::make_model(m.name), {});
      // What each recipe trains, since a recipe may change a network's defaults.
      for (const auto& [name, description] : train::list_recipes()) {
        const auto r = train::recipe_config(name);
        std::cout << "--recipe " << name << " trains " << r.model;
        std::string with;
        for (const auto& [key, value] : r.model_options.items())
          with += (with.empty() ? " with " : ", ") + key + "=" + value.dump();
        std::cout << with << '\n';
      }
      print_builtin_models();
      return;
    }
    const auto options = parse_model_options(p->options);
    auto net = model::make_model(p->model, options);  // an unknown name or option: one line
    for (const auto& m : model::list_models())
      if (m.name == p->model) print(m, net, p->options);
    if (model::ties_dihedral(options))
      std::cout << "  symmetry=d4 trains these weights tied, equivariant to quarter turns and mirror images: "
                << model::DihedralTying(*net).free_parameters() << " free parameters\n";
  });
}

}  // namespace histoscan::cli
