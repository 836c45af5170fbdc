// histoscan-engine: the training engine alone (LibTorch, no image decoding), on synthetic
// patches. It checks that a machine, a GPU or a LibTorch build trains and infers, and
// measures how fast: what the engine-only build (-DHISTOSCAN_ENGINE_ONLY=ON) is for.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <ostream>
#include <string>
#include <vector>

#include <torch/torch.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "histoscan/model/checkpoint.h"
#include "histoscan/model/registry.h"
#include "histoscan/predict/predictor.h"
#include "histoscan/train/synthetic.h"
#include "histoscan/train/trainer.h"
#include "histoscan/util/atomic_file.h"
#include "histoscan/util/error.h"
#include "histoscan/util/log.h"
#include "histoscan/util/parallel.h"
#include "histoscan/util/sysinfo.h"
#include "train_flags.h"

namespace fs = std::filesystem;
using namespace histoscan;
using histoscan::cli::add_training_flags;

namespace {

struct Params {
  std::size_t patches = 4096, valid = 1024;
  int predict_batch = 512, threads = 0;
  std::string out = "engine-run", json, make_on = "cpu";
  bool overwrite = false;
  train::TrainConfig config;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void run(Params& p) {
  train::TrainConfig& c = p.config;
  if (p.patches < 2) throw InputError("--patches must be at least 2");
  if (p.valid < 2) throw InputError("--valid must be at least 2");
  check_output_dir(p.out, p.overwrite, "--out");
  train::validate(c);
  const int threads = resolve_threads(p.threads);
  torch::set_num_threads(threads);
  const c10::Device device = predict::resolve_device(c.device);
  c.device = device.str();

  auto t0 = std::chrono::steady_clock::now();
  const c10::Device make_device = p.make_on == "cpu" ? c10::Device(torch::kCPU) : device;
  auto train_set = train::synthetic_patches(p.patches, c.seed, make_device);
  auto valid_set = train::synthetic_patches(p.valid, c.seed + 1, make_device);
  const double make_s = seconds_since(t0);
  log::info("made " + std::to_string(p.patches) + " training and " + std::to_string(p.valid) + " validation patches on " +
            make_device.str() + " in " + format_number(make_s) + " s; training " + c.model + " on " + c.device + " (" +
            (c.amp ? "bfloat16 autocast" : "float32") + ", memory format " + c.memory_format +
            ", CPU threads: " + std::to_string(threads) + ")");
  fs::create_directories(p.out);
  // The checkpoints say how they were made, as histoscan train's do (no recipe: each flag is the engine's).
  nlohmann::json training = train::to_json(c);
  training.erase("recipe");
  training["patches"] = p.patches;
  training["valid_patches"] = p.valid;
  training["made_on"] = make_device.str();
  auto result = train::train_model(train_set, valid_set, c, p.out,
                                   {{"data", "synthetic"},
                                    {"data_source", "synthetic patches (histoscan-engine, seed " + std::to_string(c.seed) + ")"},
                                    {"training", training},
                                    {"seed", c.seed}});

  // Training throughput: the epochs after the first (warm-up, kernel choice), where there are.
  const auto& h = result.history;
  double train_s = 0;
  std::size_t counted = 0;
  for (std::size_t e = h.size() > 1 ? 1 : 0; e < h.size(); ++e) train_s += h[e].seconds, ++counted;
  const double train_rate = double(p.patches) * double(counted) / train_s;

  auto best = model::load_checkpoint(fs::path(p.out) / "best.pt");  // as evaluate and predict load it
  auto& net = best.net;
  predict::prepare_inference(net, c.device, c.amp);
  const std::size_t warm = std::min<std::size_t>(p.patches, static_cast<std::size_t>(p.predict_batch));
  predict::predict_logits(net, train_set.pixels.data(), warm, p.predict_batch, device, 1, c.amp);
  t0 = std::chrono::steady_clock::now();
  predict::predict_logits(net, train_set.pixels.data(), p.patches, p.predict_batch, device, 1, c.amp);
  const double predict_s = seconds_since(t0);
  const double predict_rate = double(p.patches) / predict_s;

  char line[256];
  std::snprintf(line, sizeof line, "train:   %.0f patches/s (batch %d, %zu epoch%s counted, %.1f s each)", train_rate, c.batch,
                counted, counted == 1 ? "" : "s", train_s / double(counted));
  std::cout << line << '\n';
  std::snprintf(line, sizeof line, "predict: %.0f patches/s (batch %d, from memory, %.2f s for %zu)", predict_rate,
                p.predict_batch, predict_s, p.patches);
  std::cout << line << '\n';
  std::snprintf(line, sizeof line, "loss:    %.4f after epoch 1, %.4f after epoch %zu; val_auc %.4f", h.front().loss,
                h.back().loss, h.size(), h.back().val_auc);
  std::cout << line << '\n';

  if (!p.json.empty()) {
    nlohmann::json history = nlohmann::json::array();
    for (const auto& r : h)
      history.push_back({{"epoch", r.epoch},
                         {"loss", r.loss},
                         {"accuracy", r.accuracy},
                         {"val_loss", r.val_loss},
                         {"val_auc", r.val_auc},
                         {"seconds", r.seconds}});
    nlohmann::json j = {{"device", c.device},
                        {"optimizer", c.optimizer},
                        {"augment", c.augment},
                        {"made_on", make_device.str()},
                        {"precision", c.amp ? "bfloat16 autocast" : "float32"},
                        {"memory_format", c.memory_format},
                        {"model", c.model},
                        {"threads", threads},
                        {"patches", p.patches},
                        {"batch", c.batch},
                        {"train_images_per_s", train_rate},
                        {"predict_images_per_s", predict_rate},
                        {"predict_batch", p.predict_batch},
                        {"history", history},
                        {"libtorch", TORCH_VERSION}};
    write_file_atomic(p.json, [&](std::ostream& f) { f << j.dump(2) << '\n'; });
  }
}

}  // namespace

int main(int argc, char** argv) {
  histoscan::reuse_freed_memory();  // before the first large allocation
  CLI::App app{
      "histoscan-engine: train and apply histoscan's networks on synthetic patches (no files) to check and time "
      "a machine, a GPU or a LibTorch build"};
  app.set_version_flag("--version", std::string("histoscan-engine ") + HISTOSCAN_VERSION);
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return std::string("histoscan-engine: error: ") + e.what() + " (see --help)\n";
  });
  Params p;
  auto& c = p.config;
  c.epochs = 3;
  c.early_stopping_patience = 0;
  c.progress = false;
  app.add_option("--patches", p.patches, "training patches (Kaggle's training set: 220025)")->capture_default_str();
  app.add_option("--valid", p.valid, "validation patches")->capture_default_str();
  add_training_flags(&app, c);
  app.add_option("--predict-batch", p.predict_batch, "inference batch")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_flag("--amp", c.amp, "mixed precision (bfloat16 autocast)");
  app.add_option("--make-on", p.make_on,
                 "where to make the synthetic patches: cpu (the same bytes on every machine) or device (the training "
                 "device: much faster on a GPU, other bytes)")
      ->capture_default_str()
      ->check(CLI::IsMember({"cpu", "device"}));
  app.add_option("--threads", p.threads, "CPU threads (0: all cores)")->capture_default_str();
  app.add_option("-o,--out", p.out, "run folder (checkpoints, history.csv)")->capture_default_str();
  app.add_flag("--overwrite", p.overwrite, "write into an existing run folder");
  app.add_option("--json", p.json, "also write the figures and the loss curve as JSON here");
  try {
    app.parse(argc, argv);
    run(p);
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  } catch (const InputError& e) {
    std::cerr << "histoscan-engine: error: " << e.what() << '\n';
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "histoscan-engine: failed: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
