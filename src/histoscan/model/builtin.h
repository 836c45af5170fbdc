#pragma once
// The models that ship with histoscan (models/ in the repository, listed in models/models.json):
// `predict`, `evaluate` and `scan` use the default one when no checkpoint is given, and a
// built-in model's name works wherever a checkpoint path does. No LibTorch here: this finds
// files, model::load_checkpoint reads them.
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace histoscan::model {

struct BuiltinModel {
  std::string name;
  std::filesystem::path path;  // the checkpoint file
  nlohmann::json card;         // its entry in models.json: description, command, data, metrics
};

// The folder holding models.json: $HISTOSCAN_MODELS when set, else the source tree's models/
// (compiled in).
std::filesystem::path models_dir();

// Every model models.json lists, the default first. Empty when models.json is missing; throws
// InputError naming the file when it is damaged.
std::vector<BuiltinModel> builtin_models();

// The default built-in model. Throws InputError, saying to give a checkpoint, when there is none
// or its file is missing.
BuiltinModel default_model();

// A built-in model's name (no '/' or '.', and no such file here) becomes its path; anything else
// is returned unchanged.
std::string resolve_model(const std::string& name_or_path);

// True when `path` names a built-in model's file (which histoscan never rewrites).
bool is_builtin_file(const std::filesystem::path& path);

}  // namespace histoscan::model
