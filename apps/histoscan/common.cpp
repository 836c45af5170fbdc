// What the subcommands share (commands.h): which argument is the model, --threads, --model-option.
#include <filesystem>

#include <torch/torch.h>

#include "commands.h"
#include "histoscan/model/builtin.h"
#include "histoscan/predict/views.h"
#include "histoscan/util/error.h"
#include "histoscan/util/log.h"
#include "histoscan/util/parallel.h"

namespace histoscan::cli {

namespace fs = std::filesystem;

bool names_a_model(const std::string& arg) {
  const fs::path p(arg);
  std::error_code ec;
  if (p.extension() == ".pt") return true;
  if (fs::is_directory(p, ec)) return fs::exists(p / "torchscript_model.pt", ec);
  return model::resolve_model(arg) != arg;
}

std::string default_checkpoint() {
  auto m = model::default_model();
  log::info("no checkpoint given: using the built-in model " + m.name + " (" + m.path.string() +
            "; 'histoscan models' describes it)");
  return m.path.string();
}

int set_threads(int threads) {
  int n = resolve_threads(threads);
  torch::set_num_threads(n);
  return n;
}

CLI::Option* add_tta_flag(CLI::App* cmd, int& views, const std::string& help) {
  // A flag, so that `--tta DATA` leaves DATA alone; a count only as --tta=N. CLI11 counts an
  // integer flag's uses and starts it at 0: the last use wins, and 1 is restored as the default.
  auto* opt = cmd->add_flag("--tta{8}", views, help)
                  ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast)
                  ->check(CLI::Validator(
                      [](std::string& value) -> std::string {
                        int n = 0;
                        if (CLI::detail::lexical_cast(value, n) && predict::is_view_count(n)) return {};
                        return value + " is not a number of views; give --tta (all 8) or --tta=1, 2, 4 or 8";
                      },
                      ""))
                  ->type_name("[=N]");  // the help shows --tta{8} [=N]: 8 when given alone
  views = 1;
  return opt;
}

void add_inference_flags(CLI::App* cmd, InferenceFlags& flags, const std::string& item) {
  cmd->add_option("--batch", flags.batch, "batch size")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--threads", flags.threads, "CPU threads for the network (0: all cores)")->capture_default_str();
  cmd->add_option("--device", flags.device, "auto, cpu or cuda")->capture_default_str();
  add_tta_flag(cmd, flags.views,
               "score each " + item + " in N of its dihedral views and average, N times the time: --tta (N = 8) all " +
                   "rotations and mirrors; --tta=2 the " + item +
                   " and its mirror (most of the gain); --tta=4 also the half turn");
  cmd->add_flag("--amp", flags.amp,
                "score in bfloat16: faster on recent GPUs, on CPUs with AMX and on an AMD EPYC with AVX512-BF16 (1.5-1.8x "
                "float32); an Intel CPU with AVX512-BF16 but no AMX measured slower before a fix; emulated and slower on CPUs "
                "with neither. Probabilities within about 0.03 of float32's; `histoscan bench` measures both here");
}

// KEY=VALUE: VALUE as JSON where it is a number, true/false or null, else as a string.
nlohmann::json parse_model_options(const std::vector<std::string>& items) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& item : items) {
    auto eq = item.find('=');
    if (eq == std::string::npos || eq == 0) throw InputError("--model-option " + item + ": expected KEY=VALUE, e.g. dropout=0");
    const std::string value = item.substr(eq + 1);
    nlohmann::json v = nlohmann::json::parse(value, nullptr, /*allow_exceptions=*/false);
    out[item.substr(0, eq)] = (v.is_discarded() || v.is_object() || v.is_array()) ? nlohmann::json(value) : v;
  }
  return out;
}

}  // namespace histoscan::cli
