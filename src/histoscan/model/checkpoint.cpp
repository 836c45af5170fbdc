#include "histoscan/model/checkpoint.h"

#include <torch/serialize.h>
#include <torch/version.h>

#include "histoscan/interop/foreign_model.h"
#include "histoscan/model/archive.h"
#include "histoscan/model/builtin.h"
#include "histoscan/model/registry.h"
#include "histoscan/util/atomic_file.h"
#include "histoscan/util/error.h"
#include "histoscan/util/isolate.h"

namespace histoscan::model {

namespace {
constexpr const char* kMetaKey = "histoscan_metadata";
}

void load_archive(torch::serialize::InputArchive& archive, const std::filesystem::path& path, const std::string& subject,
                  const std::string& advice, c10::Device device) {
  const std::string name = path.string();
  std::error_code ec;
  const auto bytes = std::filesystem::file_size(path, ec);
  // An honest archive takes about its own size in memory; the fuzzed ones that LibTorch
  // inflated took 2 GB from 1.4 kB, filling a string byte by byte (seconds of memset under
  // ASan before a 1 GiB limit stopped them, so the limit is tighter than for HDF5).
  const double limit_mib = 256.0 + (ec ? 0.0 : 2.0 * static_cast<double>(bytes) / (1024.0 * 1024.0));
  // The child's parse decides. LibTorch's crash reads memory it never set (valgrind:
  // uninitialised values in parseClassConstant), so whether a damaged file crashes depends on
  // what the heap held: the parse that did not crash in the child may still crash here. So a
  // file the child could not parse is refused without parsing it in this process at all.
  ProbeOutcome outcome = probe_in_child(
      [](const std::string& file) {
        // Onto the CPU: a forked child cannot use CUDA, and needs no GPU to parse.
        torch::serialize::InputArchive probe;
        probe.load_from(file, torch::Device(torch::kCPU));
      },
      name, limit_mib);
  const std::string damaged = subject + " is damaged or not a checkpoint (";
  switch (outcome.kind) {
    case ProbeOutcome::kFinished:
      break;
    case ProbeOutcome::kThrew:
      throw InputError(damaged + "cannot be read); " + advice);
    case ProbeOutcome::kCrashed:
      throw InputError(damaged + "LibTorch crashed reading it: " + outcome.how + "); " + advice);
    case ProbeOutcome::kTooMuchMemory:
      throw InputError(damaged + "reading it took over " + std::to_string(static_cast<int>(limit_mib)) + " MiB of memory); " +
                       advice);
    case ProbeOutcome::kHung:
      throw InputError(damaged + "reading it did not finish in 5 minutes); " + advice);
  }
  try {
    archive.load_from(name, device);
  } catch (const std::exception&) {
    // Not only c10::Error: on a damaged file torch::jit::load also throws its parser's
    // ErrorReport, std::runtime_error and std::out_of_range (found by fuzz_checkpoint).
    throw InputError(damaged + "cannot be read); " + advice);
  }
}

nlohmann::json version_info() { return {{"histoscan", HISTOSCAN_VERSION}, {"libtorch", TORCH_VERSION}}; }

void save_checkpoint(const std::filesystem::path& path, const torch::nn::Sequential& net, const nlohmann::json& meta) {
  torch::serialize::OutputArchive archive;
  net->save(archive);
  archive.write(kMetaKey, c10::IValue(meta.dump()));
  AtomicPath out(path);
  try {
    archive.save_to(out.temp().string());
  } catch (const c10::Error& e) {
    throw InputError("cannot write checkpoint " + path.string() + " (disk full or folder not writable?)");
  }
  out.commit();
}

Checkpoint load_checkpoint(const std::filesystem::path& given) {
  const std::string name = given.string();
  const std::filesystem::path path = resolve_model(name);  // a built-in model's name: its file
  if (!std::filesystem::exists(path))
    throw InputError(
        "checkpoint " + name +
        " does not exist; give best.pt or last.pt of a training run, or a built-in model's name ('histoscan models')");
  const auto foreign = interop::find_foreign_model(path);
  auto load_foreign = [&] {
    auto loaded = interop::load_foreign_model(foreign);
    return Checkpoint{loaded.net, loaded.meta};
  };
  if (std::filesystem::is_directory(path)) {
    if (!foreign.model.empty()) return load_foreign();
    throw InputError("checkpoint " + name + " is a folder; give the file, e.g. " + (path / "best.pt").string() +
                     ", or a folder with torchscript_model.pt and config.json (a WSInfer model)");
  }
  torch::serialize::InputArchive archive;
  load_archive(archive, path, "checkpoint " + name, "use best.pt or last.pt written by 'histoscan train'");
  c10::IValue meta_value;
  if (!archive.try_read(kMetaKey, meta_value) || !meta_value.isString()) {
    if (!foreign.model.empty()) return load_foreign();  // a TorchScript model with config.json beside it
    throw InputError("checkpoint " + name +
                     " has no histoscan metadata; it was not written by 'histoscan train' "
                     "(a TorchScript model needs WSInfer's config.json beside it)");
  }
  Checkpoint ckpt;
  try {
    ckpt.meta = nlohmann::json::parse(meta_value.toStringRef());
  } catch (const nlohmann::json::exception&) {
    throw InputError("checkpoint " + name + ": its metadata is damaged");
  }
  if (ckpt.meta.contains("export")) {  // written by 'histoscan export': TorchScript for other tools
    if (!foreign.model.empty()) return load_foreign();
    throw InputError(name +
                     " is a model exported by 'histoscan export' for other tools; give the checkpoint it was exported from, "
                     "or its WSInfer folder (torchscript_model.pt with config.json)");
  }
  if (!ckpt.meta.contains("model") || !ckpt.meta["model"].is_string())
    throw InputError("checkpoint " + name + ": its metadata names no model");
  ckpt.net = make_model(ckpt.meta["model"].get<std::string>(), ckpt.meta.value("model_options", nlohmann::json::object()));
  // Module::load would silently resize tensors to what the file holds: check shapes ourselves.
  std::vector<std::pair<std::string, std::vector<int64_t>>> expected;
  for (const auto& p : ckpt.net->named_parameters()) expected.emplace_back(p.key(), p.value().sizes().vec());
  for (const auto& b : ckpt.net->named_buffers()) expected.emplace_back(b.key(), b.value().sizes().vec());
  try {
    ckpt.net->load(archive);
  } catch (const c10::Error& e) {
    throw InputError("checkpoint " + name + " holds the weights of another network, not " +
                     ckpt.meta["model"].get<std::string>() + "; use a checkpoint written for this model");
  }
  std::size_t k = 0;
  auto check = [&](const std::string& key, const torch::Tensor& t) {
    if (t.sizes().vec() != expected[k].second)
      throw InputError("checkpoint " + name + ": tensor " + key + " has another shape than " +
                       ckpt.meta["model"].get<std::string>() + " expects; it holds the weights of another network");
    ++k;
  };
  for (const auto& p : ckpt.net->named_parameters()) check(p.key(), p.value());
  for (const auto& b : ckpt.net->named_buffers()) check(b.key(), b.value());
  if (!ckpt.meta.contains("threshold")) ckpt.meta["threshold"] = 0.5;
  use_channels_last(*ckpt.net);
  return ckpt;
}

void save_threshold(const std::filesystem::path& path, double threshold, const nlohmann::json& rule) {
  Checkpoint ckpt = load_checkpoint(path);
  if (interop::is_foreign(ckpt.net))  // its TorchScript module would not be written back: never overwrite it
    throw InputError(path.string() +
                     " is a model made elsewhere, which histoscan does not rewrite; give its threshold with --threshold");
  ckpt.meta["threshold"] = threshold;
  ckpt.meta["threshold_rule"] = rule;
  save_checkpoint(path, ckpt.net, ckpt.meta);
}

}  // namespace histoscan::model
