#pragma once
// Binary-classification metrics that reproduce scikit-learn 1.2 numerically
// (classification_report, roc_curve, roc_auc_score, log_loss, precision_recall_curve,
// average_precision_score, balanced_accuracy_score, matthews_corrcoef, brier_score_loss),
// so numbers printed by histoscan can be compared one-to-one with a Python evaluation of
// the same predictions.
// Every function validates its input and throws std::invalid_argument with one line.
#include <string>
#include <vector>

namespace histoscan::eval {

// Counts of a 2x2 confusion matrix; rows are true labels, columns predictions.
struct Confusion {
  long long tn = 0, fp = 0, fn = 0, tp = 0;
};

// Confusion matrix when a sample is predicted positive iff its probability >= threshold.
Confusion confusion_at(const std::vector<int>& labels, const std::vector<double>& probs, double threshold);

// One row of a classification report; support counts true samples of the class.
struct ClassStats {
  double precision = 0.0, recall = 0.0, f1 = 0.0;
  long long support = 0;
};

// What sklearn's classification_report gives for binary labels 0/1.
struct Report {
  ClassStats negative, positive;       // class 0, class 1
  ClassStats macro_avg, weighted_avg;  // support = total
  double accuracy = 0.0;
  Confusion confusion;
  double threshold = 0.5;
};

// Report from a confusion matrix alone; undefined ratios are 0.0 as sklearn's
// zero_division="warn" gives.
Report report_from_confusion(const Confusion& c, double threshold);

// Per-class and averaged precision/recall/F1 at `threshold` (zero_division -> 0.0).
Report classification_report(const std::vector<int>& labels, const std::vector<double>& probs, double threshold = 0.5);

// Points of the ROC curve; thresholds decrease, thresholds[0] = max score + 1.
struct RocCurve {
  std::vector<double> fpr, tpr, thresholds;
};

// Exactly sklearn.metrics.roc_curve (1.2), ties and drop_intermediate included. With
// only one class present the undefined axis is all NaN, as sklearn returns it.
RocCurve roc_curve(const std::vector<int>& labels, const std::vector<double>& scores, bool drop_intermediate = true);

// Trapezoid area under a curve whose x is monotonic (sklearn.metrics.auc).
double area_under(const std::vector<double>& x, const std::vector<double>& y);

// sklearn.metrics.roc_auc_score; O(n log n). Throws std::invalid_argument when the
// labels hold only one class.
double roc_auc(const std::vector<int>& labels, const std::vector<double>& scores);

// sklearn 1.2 log_loss (natural log, mean over samples) with its default clipping of
// probabilities to [eps, 1 - eps], eps = kLogLossEps. Both classes are assumed known,
// so one-class labels are fine (sklearn needs labels=[0, 1] for that).
double log_loss(const std::vector<int>& labels, const std::vector<double>& probs);

// log_loss with an explicit clipping epsilon (sklearn's eps=...; 1e-15 was its old default).
double log_loss(const std::vector<int>& labels, const std::vector<double>& probs, double eps);

// The clipping epsilon of log_loss: sklearn 1.2's eps="auto", the float64 machine epsilon.
extern const double kLogLossEps;

// Points of the precision-recall curve: recall decreases to a final (recall 0,
// precision 1) point that has no threshold; thresholds increase.
struct PrCurve {
  std::vector<double> precision, recall, thresholds;
};

// Exactly sklearn.metrics.precision_recall_curve (1.2). With no positive label, recall
// is 1 at every threshold, as sklearn sets it.
PrCurve pr_curve(const std::vector<int>& labels, const std::vector<double>& scores);

// sklearn.metrics.average_precision_score (1.2): the step integral of pr_curve. Follows
// sklearn on one-class labels too: 0.0 with no positive, 1.0 with no negative.
double average_precision(const std::vector<int>& labels, const std::vector<double>& scores);

// sklearn balanced_accuracy_score: the mean recall over the classes present in the labels.
double balanced_accuracy(const Confusion& c);
double balanced_accuracy(const std::vector<int>& labels, const std::vector<double>& probs, double threshold);

// sklearn matthews_corrcoef of the predictions at `threshold`; 0.0 where sklearn gives 0
// (a row or column of the confusion matrix is empty).
double matthews_corrcoef(const Confusion& c);
double matthews_corrcoef(const std::vector<int>& labels, const std::vector<double>& probs, double threshold);

// sklearn brier_score_loss: mean squared difference between label and probability.
// Throws std::invalid_argument for a probability outside [0, 1].
double brier_score(const std::vector<int>& labels, const std::vector<double>& probs);

// Text laid out exactly like sklearn's classification_report(y, y_pred, labels=[0, 1],
// target_names=["0", "1"], digits=digits).
std::string format_classification_report(const Report& r, int digits = 2);

// A small table: rows = true 0/1, columns = predicted 0/1, with labels.
std::string format_confusion_matrix(const Confusion& c);

}  // namespace histoscan::eval
