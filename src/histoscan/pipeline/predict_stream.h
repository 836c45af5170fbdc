#pragma once
// `histoscan predict`: patches streamed from files through a network, decoding of the next batch
// overlapping the network's work on the current one, into Kaggle's submission.csv.
#include <filesystem>
#include <vector>

#include <c10/core/Device.h>
#include <torch/nn/modules/container/sequential.h>

#include "histoscan/data/source.h"
#include "histoscan/data/stain.h"
#include "histoscan/data/store.h"

namespace histoscan::pipeline {

namespace fs = std::filesystem;

struct StreamOptions {
  int batch = 256;
  int threads = 0;  // decode threads; 0: all cores
  data::DecodeOptions decode;
  bool skip_bad = false;
  bool progress = true;
  double binary_threshold = -1;  // >= 0: write 0/1 labels (probability >= threshold) instead of probabilities
  int views = 1;                 // dihedral views averaged per patch (--tta: 2, 4 or 8)
  bool amp = false;              // bfloat16 (model::forward); the network from prepare_inference
  data::StainReference stain;    // the checkpoint's stain normalization, applied as each batch is decoded
};

struct StreamResult {
  std::size_t images = 0;
  double seconds = 0;
  std::vector<data::SkippedFile> skipped;
};

// Scores every entry of `index` in id order, `options.batch` at a time (memory stays flat
// however many files), and writes `id,label` rows (label = tumour probability) to out_csv
// atomically: Kaggle's submission format.
StreamResult predict_to_csv(torch::nn::Sequential& net, const data::PatchIndex& index, const fs::path& out_csv,
                            c10::Device device, const StreamOptions& options);

}  // namespace histoscan::pipeline
