#include "histoscan/eval/evaluate.h"

#include <cmath>
#include <cstdio>
#include <ostream>
#include <sstream>

#include <torch/torch.h>

#include "histoscan/eval/metrics_json.h"
#include "histoscan/predict/predictor.h"
#include "histoscan/util/atomic_file.h"
#include "histoscan/util/error.h"

namespace histoscan::eval {

Evaluation evaluate_store(model::Checkpoint& checkpoint, const data::PatchStore& store, const std::string& device,
                          int batch) {
  Evaluation e;
  e.ids = store.ids;
  e.labels = store.labels;
  for (int l : e.labels)
    if (l != 0 && l != 1) throw InputError("evaluate needs labelled data; some patches have no label");
  c10::Device dev = predict::resolve_device(device);
  checkpoint.net->to(dev);
  e.probabilities = predict::sigmoid(predict::predict_logits(checkpoint.net, store.pixels.data(), store.size(), batch, dev));
  e.report = classification_report(e.labels, e.probabilities, checkpoint.meta.value("threshold", 0.5));
  try {
    e.auc = roc_auc(e.labels, e.probabilities);
  } catch (const std::invalid_argument&) {
    e.auc = std::nan("");
  }
  return e;
}

std::string format_evaluation(const Evaluation& e) {
  std::ostringstream out;
  char buf[128];
  out << format_classification_report(e.report, 4) << '\n';
  out << "confusion matrix (threshold " << e.report.threshold << ")\n" << format_confusion_matrix(e.report.confusion) << '\n';
  std::snprintf(buf, sizeof buf, "accuracy: %.4f\n", e.report.accuracy);
  out << buf;
  if (std::isfinite(e.auc)) {
    std::snprintf(buf, sizeof buf, "ROC AUC:  %.4f\n", e.auc);
    out << buf;
  } else {
    out << "ROC AUC:  undefined (the labels hold one class only)\n";
  }
  return out.str();
}

void write_evaluation(const Evaluation& e, const fs::path& out_dir, const nlohmann::json& extra) {
  nlohmann::json metrics = report_to_json(e.report, e.auc);
  metrics["n"] = e.ids.size();
  for (const auto& [key, value] : extra.items()) metrics[key] = value;
  write_file_atomic(out_dir / "predictions.csv", [&](std::ostream& f) {
    f << "id,label,probability\n";
    char buf[40];
    for (std::size_t i = 0; i < e.ids.size(); ++i) {
      std::snprintf(buf, sizeof buf, "%.9g", e.probabilities[i]);
      f << e.ids[i] << ',' << e.labels[i] << ',' << buf << '\n';
    }
  });
  write_file_atomic(out_dir / "metrics.json", [&](std::ostream& f) { f << metrics.dump(2) << '\n'; });
}

}  // namespace histoscan::eval
