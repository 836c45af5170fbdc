#pragma once
// Each subcommand adds itself to the app: flags into one params struct, then one call into
// the library. Nothing here does the work.
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

namespace histoscan::cli {

void add_inspect(CLI::App& app);
void add_pack(CLI::App& app);
void add_synth(CLI::App& app);
void add_models(CLI::App& app);
void add_train(CLI::App& app);
void add_evaluate(CLI::App& app);
void add_metrics(CLI::App& app);
void add_bench(CLI::App& app);
void add_predict(CLI::App& app);
void add_scan(CLI::App& app);
void add_synth_slide(CLI::App& app);
void add_export(CLI::App& app);

// --model-option KEY=VALUE items as a JSON object: VALUE as JSON where it is a number,
// true/false or null, else as a string. Throws InputError for an item without KEY=.
nlohmann::json parse_model_options(const std::vector<std::string>& items);

// True when a command's argument names a model rather than data: a .pt file, a WSInfer folder
// (torchscript_model.pt inside) or a built-in model's name ('histoscan models').
bool names_a_model(const std::string& arg);

// The model predict, evaluate and scan use when none is given: the default built-in model, named
// in the log. Throws InputError, saying to give a checkpoint, where it is missing.
std::string default_checkpoint();

// Sets LibTorch's intra-op threads (0: all cores) and returns the count used.
int set_threads(int threads);

// The flags of every command that scores with a network (evaluate, predict, scan), declared once.
struct InferenceFlags {
  std::string device = "auto";
  bool amp = false;
  int batch = 256, threads = 0;
  int views = 1;  // --tta: dihedral views averaged per input (1, 2, 4 or 8)
};

// Adds --batch, --threads, --device, --tta and --amp to `cmd`, writing into `flags` (whose values
// are the defaults shown). `item` is what one input is called in the help: "patch" or "tile".
void add_inference_flags(CLI::App* cmd, InferenceFlags& flags, const std::string& item);

// Adds --tta[=N] to `cmd`: `views` becomes 8 for --tta, N for --tta=N (1, 2, 4 or 8, else a
// one-line error), and stays 1 without it.
CLI::Option* add_tta_flag(CLI::App* cmd, int& views, const std::string& help);

}  // namespace histoscan::cli
