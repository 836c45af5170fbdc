#pragma once
// Opening a LibTorch archive (a checkpoint, or a run's resume.pt) without trusting it.
#include <filesystem>
#include <string>

#include <torch/serialize/input-archive.h>

namespace histoscan::model {

// Reads the archive at `path` into `archive`. The file is parsed in a child process first:
// LibTorch 1.13's TorchScript parser dereferences bad pointers on some damaged files
// (fuzz_checkpoint found them), and others make it fill gigabytes before failing. A crash,
// hang or such memory growth there, and any error of the parse itself, becomes an InputError
// "<subject> is damaged or not a checkpoint (<why>); <advice>", where subject names the file
// (e.g. "checkpoint run/best.pt"). Its tensors are put on `device`, wherever they were saved: a
// checkpoint trained on a GPU (whose tensors say cuda:0) loads on a machine without one.
void load_archive(torch::serialize::InputArchive& archive, const std::filesystem::path& path, const std::string& subject,
                  const std::string& advice, c10::Device device = c10::Device(c10::kCPU));

}  // namespace histoscan::model
