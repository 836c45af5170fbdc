#pragma once
// The patches a training run learns from and the ones it validates on, decoded once: from a
// second DATA (--valid), or split off DATA by label (stratified) or by group (--groups, e.g. a
// slide), so that no id, and with groups no group, is on both sides. `histoscan train` and its
// tests reach the guarantee here.
#include <cstdint>
#include <string>
#include <vector>

#include "histoscan/data/source.h"
#include "histoscan/data/store.h"

namespace histoscan::data {

struct TrainValidOptions {
  std::string valid;           // a second DATA to validate on; empty: split `rows` of DATA
  SourceOptions valid_source;  // its labels file and --allow-missing
  std::string groups;          // groups CSV (id,group): split by group instead of by label
  double val_fraction = 0.25;  // share of `rows` to validate on when splitting, in (0, 1)
  std::uint64_t seed = 13;     // which rows (or groups) validate
  LoadOptions load;            // decoding: threads, --resize, --skip-bad
};

struct TrainValid {
  PatchStore train, valid;
  std::vector<SkippedFile> skipped;  // unreadable images left out (with --skip-bad), from either side
  std::size_t shared_ids = 0;        // --valid ids that are also training rows (warned about: they flatter the model)
};

// Loads `rows` of `index` (DATA) and the validation patches as `o` says, logging what trains and
// what validates. A skipped image shrinks the side it came from. Throws InputError when a row
// has no group in --groups, or as the DATA readers do.
TrainValid load_train_valid(const PatchIndex& index, const std::vector<std::size_t>& rows, const TrainValidOptions& o);

}  // namespace histoscan::data
