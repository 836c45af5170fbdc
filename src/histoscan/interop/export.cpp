#include "histoscan/interop/export.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>

#include <torch/script.h>
#include <torch/torch.h>

#include "histoscan/interop/foreign_model.h"
#include "histoscan/interop/network_graph.h"
#include "histoscan/interop/onnx_export.h"
#include "histoscan/interop/torchscript_export.h"
#include "histoscan/model/checkpoint.h"
#include "histoscan/model/preprocess.h"
#include "histoscan/predict/predictor.h"
#include "histoscan/train/synthetic.h"
#include "histoscan/util/atomic_file.h"
#include "histoscan/util/error.h"

namespace histoscan::interop {

namespace {

constexpr double kTolerance = 1e-4;

double max_difference(const std::vector<double>& a, const torch::Tensor& b) {
  auto t = b.to(torch::kCPU, torch::kFloat64).contiguous().reshape({-1});
  if (t.numel() != static_cast<int64_t>(a.size()))
    throw std::runtime_error("the exported model returned " + std::to_string(t.numel()) + " values for " +
                             std::to_string(a.size()) + " patches");
  double worst = 0;
  const double* p = t.data_ptr<double>();
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double d = std::abs(a[i] - p[i]);
    if (!(d <= worst)) worst = std::isnan(d) ? INFINITY : d;  // a NaN output is a disagreement
  }
  return worst;
}

// The check patches as the exported model takes them: float N x 3 x 96 x 96 in [0, 1], NCHW.
torch::Tensor unit_input(const data::PatchStore& store) {
  auto u8 = torch::from_blob(const_cast<std::uint8_t*>(store.pixels.data()), {static_cast<int64_t>(store.size()), 96, 96, 3},
                             torch::kUInt8);
  return model::to_float_channels_last(u8).contiguous();
}

// A sibling folder of `out` to build in, removed unless release()d.
class TempDir {
 public:
  explicit TempDir(const fs::path& out)
      : path_(out.parent_path() / ("." + out.filename().string() + ".tmp-" + std::to_string(::getpid()))) {
    std::error_code ec;
    fs::remove_all(path_, ec);
    fs::create_directories(path_, ec);
    if (ec) throw InputError("cannot create " + path_.string() + " (" + ec.message() + "); is the folder of --out writable?");
  }
  ~TempDir() {
    std::error_code ec;
    if (!released_) fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  void release() { released_ = true; }

 private:
  fs::path path_;
  bool released_ = false;
};

}  // namespace

ExportFormat parse_export_format(const std::string& name, const fs::path& out) {
  if (name == "torchscript") return ExportFormat::torchscript;
  if (name == "wsinfer") return ExportFormat::wsinfer;
  if (name == "onnx") return ExportFormat::onnx;
  if (name == "auto") {
    const auto ext = out.extension().string();
    if (ext == ".onnx") return ExportFormat::onnx;
    if (ext == ".pt" || ext == ".pth" || ext == ".ts") return ExportFormat::torchscript;
    return ExportFormat::wsinfer;
  }
  throw InputError("--format " + name + ": expected torchscript, wsinfer, onnx or auto");
}

const char* format_name(ExportFormat format) {
  switch (format) {
    case ExportFormat::torchscript:
      return "torchscript";
    case ExportFormat::wsinfer:
      return "wsinfer";
    case ExportFormat::onnx:
      return "onnx";
  }
  return "?";
}

namespace {

// Where the export goes must be free, or (with --overwrite) hold only what an export wrote:
// a file for torchscript and onnx (never the checkpoint itself), a WSInfer folder for wsinfer.
void check_export_target(const fs::path& out, const fs::path& checkpoint, const ExportOptions& o) {
  std::error_code ec;
  if (o.format != ExportFormat::wsinfer) {
    check_output_file(out, o.overwrite, "--out");
    if (fs::exists(out, ec) && fs::equivalent(out, checkpoint, ec))
      throw InputError("--out " + out.string() + " is the checkpoint itself; choose another name");
    return;
  }
  if (fs::exists(out, ec) && !fs::is_directory(out, ec))
    throw InputError("--out " + out.string() + " is a file; --format wsinfer writes a folder");
  if (!fs::exists(out, ec) || fs::is_empty(out, ec)) return;
  if (!o.overwrite)
    throw InputError("--out " + out.string() + " exists; pass --overwrite to replace it or choose another folder");
  // --overwrite replaces a WSInfer folder, never a folder with anything else in it (a run folder, say).
  for (const auto& entry : fs::directory_iterator(out, ec)) {
    const auto name = entry.path().filename().string();
    if (name != "torchscript_model.pt" && name != "config.json")
      throw InputError("--out " + out.string() + " holds " + name +
                       "; --overwrite replaces only a WSInfer folder (torchscript_model.pt, "
                       "config.json): choose another folder");
  }
}

// Puts the finished folder `dir` at `out`: the old folder (a WSInfer folder, checked before) is
// moved aside, the new one moved in, and only then the old one removed; a failed move puts the
// old one back.
void replace_folder(TempDir& dir, const fs::path& out) {
  std::error_code ec;
  fs::path aside;
  if (fs::exists(out, ec)) {
    aside = out.parent_path() / ("." + out.filename().string() + ".old-" + std::to_string(::getpid()));
    fs::rename(out, aside, ec);
    if (ec) throw InputError("cannot replace " + out.string() + " (" + ec.message() + ")");
  }
  fs::rename(dir.path(), out, ec);
  if (ec) {
    if (!aside.empty()) fs::rename(aside, out, ec);
    throw InputError("cannot move " + dir.path().string() + " to " + out.string() + "; " + out.string() + " is as it was");
  }
  dir.release();
  if (!aside.empty()) fs::remove_all(aside, ec);
}

// What every format's writer is given: the network's layers, the metadata to embed, the check
// patches and histoscan's own probabilities of them.
struct ExportJob {
  const std::vector<Layer>& layers;
  const nlohmann::json& meta;
  const data::PatchStore& store;
  const torch::Tensor& x;  // the store as exported models take it (unit_input)
  const std::vector<double>& reference;
  const std::string& model_name;
  const ExportOptions& o;

  // The largest difference from histoscan's probabilities; throws (nothing is written) above kTolerance.
  double checked(double worst) const {
    if (!(worst <= kTolerance))
      throw std::runtime_error("the exported model's probabilities differ from histoscan's by " + std::to_string(worst) +
                               " (over 1e-4); nothing written. Please report this with the checkpoint's model (" + model_name +
                               ")");
    return worst;
  }
};

void write_torchscript(const ExportJob& job, const fs::path& out, ExportResult& r) {
  r.output = "N tumour probabilities";
  AtomicPath file(out);
  save_torchscript(job.layers, job.meta, file.temp(), ScriptOutput::probability, job.o.views);
  auto loaded = torch::jit::load(file.temp().string(), torch::Device(torch::kCPU));
  c10::InferenceMode guard;
  r.max_difference = job.checked(max_difference(job.reference, loaded.forward({job.x}).toTensor()));
  file.commit();
}

void write_wsinfer(const ExportJob& job, const fs::path& out, ExportResult& r) {
  r.output = "N x 2 logits [normal, tumor] (softmax gives the probabilities)";
  TempDir dir(out);
  save_torchscript(job.layers, job.meta, dir.path() / "torchscript_model.pt", ScriptOutput::two_logits, job.o.views);
  write_file_atomic(dir.path() / "config.json", [&](std::ostream& f) { f << wsinfer_config(job.o.mpp).dump(2) << "\n"; });
  // Checked as histoscan reads a model made elsewhere (what WSInfer and QuPath do: softmax).
  auto loaded = load_foreign_model({dir.path() / "torchscript_model.pt", dir.path() / "config.json"});
  auto logits = predict::predict_logits(loaded.net, job.store.pixels.data(), job.store.size(), 256, torch::kCPU, 1, false);
  r.max_difference = job.checked(max_difference(job.reference, torch::sigmoid(torch::tensor(logits))));
  replace_folder(dir, out);
}

void write_onnx(const ExportJob& job, const fs::path& out, ExportResult& r) {
  r.input = "\"image\", float32 N x 3 x 96 x 96, RGB in [0, 1], NCHW";
  r.output = "\"probability\", N x 1 tumour probabilities (opset " + std::to_string(kOnnxOpset) + ")";
  AtomicPath file(out);
  save_onnx(job.layers, job.meta, file.temp());
  r.max_difference = job.checked(max_difference(job.reference, run_onnx_with_opencv(file.temp(), job.x)));
  file.commit();
}

}  // namespace

ExportResult export_model(const fs::path& checkpoint, const fs::path& out_arg, const ExportOptions& o) {
  const fs::path out = out_arg.has_filename() ? out_arg : out_arg.parent_path();
  predict::check_views(o.views);
  if (o.format == ExportFormat::onnx && o.views > 1)
    throw InputError("--tta: the ONNX export scores one view; use --format torchscript or wsinfer to fold the views in");
  if (!(o.mpp > 0)) throw InputError("--mpp must be a positive number of micrometres per pixel");
  check_export_target(out, checkpoint, o);
  auto ckpt = model::load_checkpoint(checkpoint);
  if (is_foreign(ckpt.net))
    throw InputError(
        checkpoint.string() +
        " is a model made elsewhere (TorchScript with config.json); export takes a checkpoint written by 'histoscan train'");
  if (ckpt.meta.contains("stain_norm") && !ckpt.meta["stain_norm"].is_null())
    throw InputError(
        checkpoint.string() + " was trained on stain-normalized patches (--stain-norm " +
        ckpt.meta["stain_norm"].value("method", std::string("?")) +
        "), which an exported model would not apply; score it with histoscan, or train without --stain-norm to export");
  const std::string model_name = ckpt.meta.value("model", "");

  // histoscan's own scores of the check patches, as evaluate, predict and scan compute them.
  auto store = train::synthetic_patches(static_cast<std::size_t>(std::max(1, o.check_patches)), 7);
  const auto device = predict::prepare_inference(ckpt.net, "cpu", false);
  const auto reference =
      predict::sigmoid(predict::predict_logits(ckpt.net, store.pixels.data(), store.size(), 256, device, o.views, false));
  const auto layers = describe_network(ckpt.net, model_name);

  nlohmann::json meta = ckpt.meta;
  meta["export"] = {
      {"format", format_name(o.format)}, {"tta", o.views > 1}, {"tta_views", o.views}, {"by", model::version_info()}};
  ExportResult r;
  r.written = out;
  r.checked = static_cast<int>(store.size());
  r.input = "float32 N x 3 x 96 x 96, RGB in [0, 1], NCHW (uint8 0-255 also taken)";
  const auto x = unit_input(store);
  const ExportJob job{layers, meta, store, x, reference, model_name, o};
  switch (o.format) {
    case ExportFormat::torchscript:
      write_torchscript(job, out, r);
      break;
    case ExportFormat::wsinfer:
      write_wsinfer(job, out, r);
      break;
    case ExportFormat::onnx:
      write_onnx(job, out, r);
      break;
  }
  return r;
}

}  // namespace histoscan::interop
