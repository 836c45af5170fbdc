#pragma once
// --tta's view counts, without LibTorch: scan's option checks and the command line use them.
#include <string>

#include "histoscan/util/error.h"

namespace histoscan::predict {

// The dihedral views --tta averages (predict_logits): 1 (the patch as it is), 2 (with its
// left-right mirror), 4 (also the half turn and its mirror), 8 (all four quarter turns, each
// mirrored; --tta alone).
inline constexpr int kAllViews = 8;

// Whether views is a count --tta takes: 1, 2, 4 or 8. The one test of the set, for the library,
// the command line and Python.
inline constexpr bool is_view_count(long long views) { return views == 1 || views == 2 || views == 4 || views == 8; }

// Throws InputError naming --tta unless is_view_count(views).
inline void check_views(int views) {
  if (!is_view_count(views))
    throw InputError("--tta=" + std::to_string(views) +
                     ": expected 1, 2, 4 or 8 views (--tta alone: 8; --tta=2: the patch and its mirror)");
}

}  // namespace histoscan::predict
