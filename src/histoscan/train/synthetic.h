#pragma once
// Synthetic patches made with tensor operations alone (no files, no OpenCV): what the engine
// build trains on to check a machine, a GPU or a LibTorch, and to measure throughput.
#include <cstddef>
#include <cstdint>

#include <c10/core/Device.h>

#include "histoscan/data/store.h"

namespace histoscan::train {

// n patches, labels alternating 0, 1, 0, ...: pink stroma with scattered purple nuclei; a
// tumour patch (1) has crowded nuclei in its centre 32 x 32 (PCam's label region). The same
// (n, seed) gives the same bytes. A network learns them in an epoch or two; they are not
// histology (data::synth_patch, with OpenCV, draws closer to it).
// On a GPU `device` they are made there, much faster, from that device's random generator:
// other bytes than the CPU's for the same seed.
data::PatchStore synthetic_patches(std::size_t n, std::uint64_t seed, c10::Device device = c10::kCPU);

}  // namespace histoscan::train
