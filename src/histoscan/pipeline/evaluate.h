#pragma once
// `histoscan evaluate`: a checkpoint's probabilities on labelled data, summarized (the glue
// between model/, predict/ and eval/, whose metrics know no network).
#include <string>
#include <vector>

#include "histoscan/data/store.h"
#include "histoscan/eval/outputs.h"
#include "histoscan/model/checkpoint.h"

namespace histoscan::pipeline {

// Tumour probability of every patch of `store` under the checkpoint's network on `device`.
// With views > 1 (--tta), the mean over that many dihedral views (predict_logits); with amp, in bfloat16
// (prepare_inference: the checkpoint's network is converted).
std::vector<double> score_store(model::Checkpoint& checkpoint, const data::PatchStore& store, const std::string& device,
                                int batch = 256, int views = 1, bool amp = false);

// Scores `store` (which must be labelled) and summarizes at the cut-off `options` asks for;
// without an explicit rule (cutoff_given false) at the checkpoint's own threshold.
eval::ModelResult evaluate_checkpoint(const std::string& path, model::Checkpoint& checkpoint, const data::PatchStore& store,
                                      const std::string& device, eval::SummaryOptions options, bool cutoff_given, int batch = 256,
                                      int views = 1, bool amp = false);

}  // namespace histoscan::pipeline
