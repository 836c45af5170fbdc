#pragma once
// `histoscan synth`: a small synthetic dataset in Kaggle's layout, the built-in default that
// `make run` trains on. Positive patches carry a dense cluster of large dark nuclei in the
// centre 32x32, as PCam's label depends only on that region; both classes share the same
// tissue-like background, stain variation and scattered nuclei elsewhere.
#include <cstdint>
#include <filesystem>

namespace histoscan::data {

struct SynthOptions {
  std::size_t train = 2000;        // labelled training patches
  std::size_t test = 200;          // unlabelled test patches
  double positive_fraction = 0.4;  // Kaggle's is 0.405
  std::uint64_t seed = 7;
  bool overwrite = false;
};

// Writes DIR/train/<id>.tif, DIR/train_labels.csv, DIR/test/<id>.tif and the test answer key
// DIR/test_labels.csv (ids: 40 hex characters). Built in a temporary folder beside DIR and renamed into place; refuses an
// existing non-empty DIR unless overwrite.
void write_synthetic_dataset(const std::filesystem::path& dir, const SynthOptions& options);

// One synthetic patch (96x96 RGB bytes) with or without the tumour pattern, for tests.
void synth_patch(bool tumour, std::uint64_t seed, std::uint8_t* out);

}  // namespace histoscan::data
