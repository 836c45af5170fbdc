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
// (e.g. "checkpoint run/best.pt").
void load_archive(torch::serialize::InputArchive& archive, const std::filesystem::path& path, const std::string& subject,
                  const std::string& advice);

}  // namespace histoscan::model
