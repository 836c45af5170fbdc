#pragma once
// `histoscan export`: a checkpoint as a model other tools run, checked against histoscan's own
// scores before it is kept.
#include <filesystem>
#include <string>

namespace histoscan::interop {

namespace fs = std::filesystem;

enum class ExportFormat { torchscript, wsinfer, onnx };

struct ExportOptions {
  ExportFormat format = ExportFormat::torchscript;
  int views = 1;       // dihedral views folded into the model (--tta: 2, 4 or 8; torchscript, wsinfer)
  double mpp = 0.972;  // µm per pixel of the patches the network was trained on (wsinfer's spacing_um_px)
  bool overwrite = false;
  int check_patches = 64;  // synthetic patches the exported model is compared on
};

struct ExportResult {
  fs::path written;           // the file, or the folder for wsinfer
  double max_difference;      // largest |p_exported - p_histoscan| on the check patches
  int checked;                // how many patches
  std::string input, output;  // what the model takes and returns, in words
};

// "torchscript", "wsinfer", "onnx", or "auto" (from out: .onnx -> onnx, .pt -> torchscript,
// else wsinfer). Throws InputError naming --format.
ExportFormat parse_export_format(const std::string& name, const fs::path& out);
const char* format_name(ExportFormat format);

// Loads `checkpoint` (a histoscan checkpoint; a model made elsewhere is refused), writes the
// model to `out` atomically (wsinfer: a folder with torchscript_model.pt and config.json, made
// beside and renamed into place), loads what it wrote with the tool it is for (LibTorch's
// torch::jit::load; OpenCV's DNN module for onnx) and compares its tumour probabilities with
// histoscan's on synthetic patches. Throws InputError for bad input, and std::runtime_error
// (nothing kept) when the exported model disagrees by more than 1e-4.
ExportResult export_model(const fs::path& checkpoint, const fs::path& out, const ExportOptions& options);

}  // namespace histoscan::interop
