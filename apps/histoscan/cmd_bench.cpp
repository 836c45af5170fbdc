// histoscan bench: throughput beside the PyTorch peer, a table for people and JSON for scripts.
#include <iostream>
#include <memory>

#include "commands.h"
#include "histoscan/bench/bench.h"
#include "histoscan/util/atomic_file.h"

namespace histoscan::cli {

void add_bench(CLI::App& app) {
  struct Params {
    bench::BenchOptions options;
    std::string json;
  };
  auto p = std::make_shared<Params>();
  p->options.data = "../shared/data/pcam-subset/valid";
  p->options.peer = "../shared/peers/torch_seed_recipe.py";
  auto* cmd = app.add_subcommand("bench", "training, prediction and decoding throughput beside the PyTorch peer");
  cmd->add_option("--data", p->options.data, "class folders 0/ 1/ of real patches")->capture_default_str();
  cmd->add_option("--peer", p->options.peer, "the peer script (skipped when missing)")->capture_default_str();
  cmd->add_option("--images", p->options.images, "patches per measurement")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--runs", p->options.runs, "each figure is the median of this many runs")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--train-steps", p->options.train_steps, "timed training steps of 128 per run")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--device", p->options.device,
                  "cpu, cuda or auto: where histoscan's training, inference, predict and scan rows run (the peer and the "
                  "2-rank rows stay on the CPU; on a GPU machine histoscan-engine and scripts/engine_gpu_check.sh compare "
                  "with the peer on the GPU)")
      ->capture_default_str();
  cmd->add_option("--threads", p->options.threads, "threads for histoscan and the peer (0: all cores)")->capture_default_str();
  cmd->add_option("--slide-side", p->options.slide_side,
                  "also scan a slide this many pixels square (e.g. 100000) in a child process and report its peak RSS");
  cmd->add_option("--json", p->json, "also write the JSON to this file");
  cmd->callback([p] {
    p->options.exe = fs::read_symlink("/proc/self/exe");
    auto result = bench::run_bench(p->options);
    std::cout << bench::format_table(result) << '\n' << result.dump(2) << '\n';
    if (!p->json.empty()) write_file_atomic(p->json, [&](std::ostream& f) { f << result.dump(2) << '\n'; });
  });
}

}  // namespace histoscan::cli
