// Which of a scoring command's arguments is the model (commands.h).
#include <filesystem>

#include "commands.h"
#include "histoscan/model/builtin.h"
#include "histoscan/util/log.h"

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
  log::info("no checkpoint given: using the built-in model " + m.name + " (" + m.path.string() + "; 'histoscan models' describes it)");
  return m.path.string();
}

}  // namespace histoscan::cli
