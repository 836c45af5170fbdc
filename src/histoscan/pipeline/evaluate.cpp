#include "histoscan/pipeline/evaluate.h"

#include <torch/torch.h>

#include "histoscan/data/stain.h"
#include "histoscan/predict/predictor.h"
#include "histoscan/util/error.h"

namespace histoscan::pipeline {

using namespace eval;

std::vector<double> score_store(model::Checkpoint& checkpoint, const data::PatchStore& store, const std::string& device,
                                int batch, int views, bool amp) {
  c10::Device dev = predict::prepare_inference(checkpoint.net, device, amp);
  std::vector<std::uint8_t> recoloured;
  const auto* pixels = data::normalized_patches(data::stain_of_model(checkpoint.meta, "checkpoint"), store.pixels.data(),
                                                store.size(), recoloured);
  return predict::sigmoid(predict::predict_logits(checkpoint.net, pixels, store.size(), batch, dev, views, amp));
}

ModelResult evaluate_checkpoint(const std::string& path, model::Checkpoint& checkpoint, const data::PatchStore& store,
                                const std::string& device, SummaryOptions options, bool cutoff_given, int batch, int views,
                                bool amp) {
  for (int l : store.labels)
    if (l != 0 && l != 1) throw InputError("evaluate needs labelled data; some patches have no label");
  ModelResult r;
  r.name = path;
  r.meta = checkpoint.meta;
  fs::path history = fs::path(path).parent_path() / "history.csv";
  if (fs::exists(history)) r.history_csv = history;
  r.ids = store.ids;
  r.labels = store.labels;
  r.probs = score_store(checkpoint, store, device, batch, views, amp);
  r.views = views;
  if (!cutoff_given) options.cutoff = {CutoffRule::threshold, model::saved_threshold(checkpoint.meta)};
  r.summary = summarize(r.labels, r.probs, options);
  return r;
}

}  // namespace histoscan::pipeline
