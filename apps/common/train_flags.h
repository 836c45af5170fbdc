#pragma once
// The training flags `histoscan train` and `histoscan-engine` share, declared once: the same
// names, help and checks in both binaries.
#include <CLI/CLI.hpp>

#include "histoscan/train/config.h"

namespace histoscan::cli {

// Adds --model, --epochs, --batch, --lr, --optimizer, --momentum, --augment, --seed, --device and
// --memory-format to `cmd`, writing into `config`, whose values are shown as the defaults.
void add_training_flags(CLI::App* cmd, train::TrainConfig& config);

}  // namespace histoscan::cli
