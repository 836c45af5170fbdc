// The models that ship with histoscan (builtin.h).
#include "histoscan/model/builtin.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "histoscan/util/error.h"

namespace histoscan::model {

namespace fs = std::filesystem;

fs::path models_dir() {
  if (const char* env = std::getenv("HISTOSCAN_MODELS"); env && *env) return env;
  return HISTOSCAN_MODELS_DIR;
}

std::vector<BuiltinModel> builtin_models() {
  const fs::path dir = models_dir();
  const fs::path index = dir / "models.json";
  std::ifstream in(index);
  if (!in) return {};
  std::stringstream text;
  text << in.rdbuf();
  std::vector<BuiltinModel> out;
  try {
    const auto j = nlohmann::json::parse(text.str());
    const std::string fallback = j.at("default");
    for (const auto& m : j.at("models")) {
      BuiltinModel b{m.at("name"), dir / m.at("file").get<std::string>(), m};
      if (b.name == fallback) out.insert(out.begin(), b);
      else out.push_back(b);
    }
    if (out.empty() || out.front().name != fallback)
      throw InputError(index.string() + ": its default model \"" + fallback + "\" is not among its models; fix the file");
  } catch (const nlohmann::json::exception& e) {
    throw InputError(index.string() + " is damaged (" + e.what() + "); restore it from the repository");
  }
  return out;
}

BuiltinModel default_model() {
  auto models = builtin_models();
  if (models.empty())
    throw InputError(
        "no checkpoint given and no built-in model found (" + (models_dir() / "models.json").string() +
        " is missing); give a checkpoint (best.pt) first, or set HISTOSCAN_MODELS to the repository's models/ folder");
  const auto& m = models.front();
  if (!fs::exists(m.path))
    throw InputError("no checkpoint given and the built-in model " + m.name + " is missing (" + m.path.string() +
                     "); give a checkpoint (best.pt) first, or restore the file from the repository");
  return m;
}

std::string resolve_model(const std::string& name_or_path) {
  std::error_code ec;
  if (name_or_path.find_first_of("/.") != std::string::npos || fs::exists(name_or_path, ec)) return name_or_path;
  for (const auto& m : builtin_models())
    if (m.name == name_or_path) return m.path.string();
  return name_or_path;
}

bool is_builtin_file(const fs::path& path) {
  std::error_code ec;
  for (const auto& m : builtin_models())
    if (fs::exists(m.path) && fs::equivalent(m.path, path, ec)) return true;
  return false;
}

}  // namespace histoscan::model
