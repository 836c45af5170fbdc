#include "histoscan/interop/foreign_model.h"

#include <algorithm>
#include <cctype>
#include <fstream>

#include <torch/nn/functional/upsampling.h>
#include <torch/script.h>

#include "histoscan/util/error.h"
#include "histoscan/util/isolate.h"

namespace histoscan::interop {

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

std::string first_line(const std::string& s) {
  auto end = s.find('\n');
  return end == std::string::npos ? s : s.substr(0, end);
}

}  // namespace

ForeignConfig parse_foreign_config(const nlohmann::json& j, const std::string& file) {
  auto bad = [&](const std::string& field, const std::string& what) -> InputError {
    return InputError(file + ": \"" + field + "\" " + what +
                      " (WSInfer's model config: num_classes, patch_size_pixels, spacing_um_px, "
                      "class_names, transform)");
  };
  if (!j.is_object()) throw InputError(file + ": not a JSON object; expected WSInfer's model config");
  auto positive_int = [&](const char* field) {
    if (!j.contains(field)) throw bad(field, "is missing");
    if (!j[field].is_number_integer() || j[field].get<int64_t>() < 1) throw bad(field, "must be a positive integer");
    return j[field].get<int64_t>();
  };
  ForeignConfig c;
  c.num_classes = positive_int("num_classes");
  c.patch_size = positive_int("patch_size_pixels");
  if (!j.contains("spacing_um_px")) throw bad("spacing_um_px", "is missing");
  if (!j["spacing_um_px"].is_number() || !(j["spacing_um_px"].get<double>() > 0))
    throw bad("spacing_um_px", "must be a positive number of micrometres per pixel");
  c.mpp = j["spacing_um_px"].get<double>();
  if (!j.contains("class_names")) throw bad("class_names", "is missing");
  if (!j["class_names"].is_array()) throw bad("class_names", "must be an array of strings");
  for (const auto& name : j["class_names"]) {
    if (!name.is_string()) throw bad("class_names", "must be an array of strings");
    if (std::count(c.class_names.begin(), c.class_names.end(), name.get<std::string>()))
      throw bad("class_names", "repeats a name");
    c.class_names.push_back(name.get<std::string>());
  }
  if (static_cast<int64_t>(c.class_names.size()) != c.num_classes)
    throw bad("class_names",
              "has " + std::to_string(c.class_names.size()) + " names for num_classes " + std::to_string(c.num_classes));
  if (c.num_classes > 1) {
    int64_t found = -1;
    if (j.contains("tumour_class")) {
      if (!j["tumour_class"].is_string()) throw bad("tumour_class", "must be one of class_names");
      auto it = std::find(c.class_names.begin(), c.class_names.end(), j["tumour_class"].get<std::string>());
      if (it == c.class_names.end()) throw bad("tumour_class", "must be one of class_names");
      found = it - c.class_names.begin();
    } else {
      for (std::size_t i = 0; i < c.class_names.size(); ++i) {
        const auto n = lower(c.class_names[i]);
        if (n == "tumor" || n == "tumour") found = static_cast<int64_t>(i);
      }
      if (found < 0)
        throw bad("class_names",
                  "has no class named tumor or tumour; add \"tumour_class\": \"NAME\" to say which one histoscan scores");
    }
    c.tumour = found;
  }
  if (!j.contains("transform")) throw bad("transform", "is missing");
  if (!j["transform"].is_array()) throw bad("transform", "must be an array of {\"name\", \"arguments\"}");
  c.resize = c.patch_size;
  bool to_tensor = false;
  for (const auto& t : j["transform"]) {
    if (!t.is_object() || !t.contains("name") || !t["name"].is_string()) throw bad("transform", "has an item without a \"name\"");
    for (const auto& [key, value] : t.items())
      if (key != "name" && key != "arguments") throw bad("transform", "item has the unknown field \"" + key + "\"");
    const auto name = t["name"].get<std::string>();
    const auto args = t.value("arguments", nlohmann::json::object());
    if (!args.is_object()) throw bad("transform", name + "'s \"arguments\" must be an object");
    if (name == "Resize") {
      if (!args.contains("size") || !args["size"].is_number_integer() || args["size"].get<int64_t>() < 1)
        throw bad("transform", "Resize needs \"arguments\": {\"size\": a positive integer}");
      c.resize = args["size"].get<int64_t>();
      if (c.resize > 1024) throw bad("transform", "Resize's size " + std::to_string(c.resize) + " is over 1024 pixels");
    } else if (name == "ToTensor") {
      to_tensor = true;
    } else if (name == "Normalize") {
      for (const char* key : {"mean", "std"}) {
        if (!args.contains(key) || !args[key].is_array() || args[key].size() != 3 ||
            !std::all_of(args[key].begin(), args[key].end(), [](const nlohmann::json& v) { return v.is_number(); }))
          throw bad("transform", std::string("Normalize needs \"") + key + "\": 3 numbers (R, G, B)");
      }
      c.mean = args["mean"].get<std::vector<double>>();
      c.std = args["std"].get<std::vector<double>>();
      if (!std::all_of(c.std.begin(), c.std.end(), [](double s) { return s > 0; }))
        throw bad("transform", "Normalize's std must be positive");
    } else {
      throw bad("transform", "names \"" + name + "\"; WSInfer knows Resize, ToTensor and Normalize");
    }
  }
  if (!to_tensor) throw bad("transform", "has no ToTensor; WSInfer's models take ToTensor's float input");
  if (c.patch_size != 96)
    throw bad("patch_size_pixels", "is " + std::to_string(c.patch_size) +
                                       "; histoscan scores 96 x 96 patches (PCam's), so it scores models of 96 px patches");
  return c;
}

ForeignModelImpl::ForeignModelImpl(const torch::jit::Module& module, const ForeignConfig& config)
    : module_(module), config_(config) {
  auto opts = torch::TensorOptions().dtype(torch::kFloat32);
  mean_ =
      register_buffer("mean", torch::tensor(std::vector<float>(config.mean.begin(), config.mean.end()), opts).view({1, 3, 1, 1}));
  std_ = register_buffer("std", torch::tensor(std::vector<float>(config.std.begin(), config.std.end()), opts).view({1, 3, 1, 1}));
  module_.eval();
}

torch::Tensor ForeignModelImpl::forward(const torch::Tensor& input) {
  auto x = input.to(torch::kFloat32).contiguous();
  if (x.size(2) != config_.resize || x.size(3) != config_.resize)
    x = torch::nn::functional::interpolate(x, torch::nn::functional::InterpolateFuncOptions()
                                                  .size(std::vector<int64_t>{config_.resize, config_.resize})
                                                  .mode(torch::kBilinear)
                                                  .align_corners(false)
                                                  .antialias(config_.resize < x.size(2)));  // as torchvision shrinks
  x = (x - mean_) / std_;
  auto out = module_.forward({x}).toTensor().to(torch::kFloat32);
  if (out.dim() == 1) out = out.unsqueeze(1);
  if (out.size(1) == 1) return out;
  auto tumour = out.narrow(1, config_.tumour, 1);
  auto others =
      torch::cat({out.narrow(1, 0, config_.tumour), out.narrow(1, config_.tumour + 1, out.size(1) - config_.tumour - 1)}, 1);
  return tumour - torch::logsumexp(others, 1, /*keepdim=*/true);
}

void ForeignModelImpl::to(torch::Device device, bool non_blocking) {
  module_.to(device, non_blocking);
  torch::nn::Module::to(device, non_blocking);
}
void ForeignModelImpl::to(torch::Dtype dtype, bool non_blocking) {
  // The model keeps its own dtype (--amp is a histoscan network's): float32 in, logits out.
  (void)dtype, (void)non_blocking;
}
void ForeignModelImpl::to(torch::Device device, torch::Dtype dtype, bool non_blocking) { to(device, non_blocking); }
void ForeignModelImpl::train(bool on) {
  torch::nn::Module::train(on);
  module_.eval();
}

bool is_foreign(const torch::nn::Sequential& net) { return !net->is_empty() && net->ptr(0)->as<ForeignModel>() != nullptr; }

ForeignPaths find_foreign_model(const fs::path& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    if (fs::exists(path / "torchscript_model.pt") && fs::exists(path / "config.json"))
      return {path / "torchscript_model.pt", path / "config.json"};
    return {};
  }
  // A file with config.json beside it: only WSInfer's config (training runs write their own
  // config.json beside best.pt).
  const auto beside = path.parent_path() / "config.json";
  if (!fs::is_regular_file(path, ec) || !fs::is_regular_file(beside, ec)) return {};
  std::ifstream in(beside);
  const auto j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_object() && j.contains("num_classes")) return {path, beside};
  return {};
}

ForeignLoaded load_foreign_model(const ForeignPaths& paths) {
  const std::string file = paths.model.string(), cfg = paths.config.string();
  nlohmann::json j;
  {
    std::ifstream in(paths.config);
    if (!in) throw InputError("cannot read " + cfg);
    try {
      j = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      throw InputError(cfg + " is not valid JSON (" + first_line(e.what()) + "); expected WSInfer's model config");
    }
  }
  ForeignConfig config = parse_foreign_config(j, cfg);
  // A damaged file can crash LibTorch's parser (fuzz_checkpoint): parse it in a child first.
  std::error_code ec;
  const auto bytes = fs::file_size(paths.model, ec);
  if (ec) throw InputError(file + " is not a file; a model made elsewhere is a TorchScript file (torch.jit.save)");
  ProbeOutcome outcome = probe_in_child([](const std::string& f) { torch::jit::load(f, torch::Device(torch::kCPU)); }, file,
                                        256.0 + 2.0 * static_cast<double>(bytes) / (1024.0 * 1024.0));
  if (outcome.kind != ProbeOutcome::kFinished)
    throw InputError(
        file + " is not a TorchScript model LibTorch can read (" +
        (outcome.kind == ProbeOutcome::kCrashed ? "LibTorch crashed reading it: " + outcome.how : std::string("cannot be read")) +
        "); save it with torch.jit.save of a traced or scripted module");
  torch::jit::Module module;
  try {
    module = torch::jit::load(file, torch::Device(torch::kCPU));
  } catch (const std::exception& e) {
    throw InputError(file + " is not a TorchScript model LibTorch can read (" + first_line(e.what()) + ")");
  }
  if (!module.find_method("forward"))
    throw InputError(
        file + " has no forward method (a state dict or weights only?); save a traced or scripted module with torch.jit.save");
  // One run on a 2-patch batch of config's input size: does it take it, and give what config says?
  {
    c10::InferenceMode guard;
    module.eval();
    torch::Tensor out;
    const auto r = config.resize;
    try {
      auto result = module.forward({torch::full({2, 3, r, r}, 0.5f)});
      if (!result.isTensor())
        throw InputError(file + ": forward returns a " + result.tagKind() +
                         ", not a tensor of logits (WSInfer's models return N x num_classes)");
      out = result.toTensor();
    } catch (const InputError&) {
      throw;
    } catch (const std::exception& e) {
      throw InputError(file + ": forward fails on a 2 x 3 x " + std::to_string(r) + " x " + std::to_string(r) +
                       " batch, the input " + cfg + " describes (transform Resize / patch_size_pixels): " + first_line(e.what()));
    }
    if (out.dim() < 1 || out.dim() > 2)
      throw InputError(file + ": forward returns a tensor of " + std::to_string(out.dim()) +
                       " dimensions; WSInfer's models return N x num_classes logits");
    const bool one = out.dim() == 1 || (out.dim() == 2 && out.size(1) == 1);
    const bool shape_ok =
        out.size(0) == 2 && (one ? config.num_classes == 1 : out.dim() == 2 && out.size(1) == config.num_classes);
    if (!shape_ok) {
      std::string shape;
      for (auto s : out.sizes()) shape += (shape.empty() ? "" : " x ") + std::to_string(s);
      throw InputError(file + ": forward returns " + shape + " for 2 patches, where " + cfg + "'s \"num_classes\" " +
                       std::to_string(config.num_classes) + " means 2 x " + std::to_string(config.num_classes));
    }
  }
  torch::nn::Sequential net;
  net->push_back("model", ForeignModel(std::move(module), config));
  nlohmann::json meta = {{"model", "torchscript"},
                         {"model_file", file},
                         {"config", j},
                         {"threshold", 0.5},
                         {"patch_mpp", config.mpp},
                         {"tumour_class", config.num_classes > 1 ? config.class_names[config.tumour] : config.class_names[0]}};
  return {net, meta};
}

}  // namespace histoscan::interop
