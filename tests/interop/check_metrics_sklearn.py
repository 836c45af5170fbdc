#!/usr/bin/env python3
"""Every number histoscan wrote to metrics.json equals scikit-learn's on its predictions.csv.

  check_metrics_sklearn.py METRICS.json PREDICTIONS.csv [--min-sensitivity S]

Recomputes with Debian's python3-sklearn (1.2) from predictions.csv (id,label,probability) and
compares to 1e-9: AUC, ROC and precision-recall curves, average precision, the report at the
chosen threshold (per-class precision/recall/f1/support, macro and weighted averages,
accuracy, confusion matrix), balanced accuracy, Matthews correlation, log loss, Brier score,
the reliability curve and expected calibration error. Exit 0 when all agree.
"""
import csv, json, math, sys

import numpy as np
from sklearn import metrics as M
from sklearn.calibration import calibration_curve

TOL = 1e-9
failures = []


def close(name, ours, theirs):
    ours, theirs = np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float)
    if ours.shape != theirs.shape:
        failures.append(f"{name}: shape {ours.shape} vs sklearn {theirs.shape}")
    elif not np.allclose(ours, theirs, rtol=0, atol=TOL, equal_nan=True):
        worst = np.nanmax(np.abs(ours - theirs))
        failures.append(f"{name}: differs from sklearn by {worst:.3g}")


def main():
    metrics_path, preds_path = sys.argv[1], sys.argv[2]
    min_sens = float(sys.argv[4]) if len(sys.argv) > 4 and sys.argv[3] == "--min-sensitivity" else None
    m = json.load(open(metrics_path))
    with open(preds_path) as f:
        rows = list(csv.DictReader(f))
    y = np.array([int(r["label"]) for r in rows])
    p = np.array([float(r["probability"]) for r in rows])
    t = m["threshold"]
    pred = (p >= t).astype(int)

    close("auc", m["auc"], M.roc_auc_score(y, p))
    fpr, tpr, thr = M.roc_curve(y, p)
    close("roc.fpr", m["roc"]["fpr"], fpr)
    close("roc.tpr", m["roc"]["tpr"], tpr)
    close("roc.thresholds", m["roc"]["thresholds"], thr)
    prec, rec, pthr = M.precision_recall_curve(y, p)
    close("pr.precision", m["pr"]["precision"], prec)
    close("pr.recall", m["pr"]["recall"], rec)
    close("pr.thresholds", m["pr"]["thresholds"], pthr)
    close("average_precision", m["average_precision"], M.average_precision_score(y, p))
    close("accuracy", m["accuracy"], M.accuracy_score(y, pred))
    close("balanced_accuracy", m["balanced_accuracy"], M.balanced_accuracy_score(y, pred))
    close("mcc", m["mcc"], M.matthews_corrcoef(y, pred))
    close("log_loss", m["log_loss"], M.log_loss(y, p, labels=[0, 1]))
    close("brier", m["brier"], M.brier_score_loss(y, p))
    close("confusion_matrix", m["confusion_matrix"], M.confusion_matrix(y, pred, labels=[0, 1]))
    report = M.classification_report(y, pred, labels=[0, 1], output_dict=True, zero_division=0)
    for cls in ("0", "1"):
        for k, sk in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score"), ("support", "support")):
            close(f"classes.{cls}.{k}", m["classes"][cls][k], report[cls][sk])
    for avg, sk in (("macro_avg", "macro avg"), ("weighted_avg", "weighted avg")):
        for k, sk2 in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")):
            close(f"{avg}.{k}", m[avg][k], report[sk][sk2])
    cal = m["calibration"]
    frac, mean = calibration_curve(y, p, n_bins=10, strategy="uniform")
    nonempty = [i for i, c in enumerate(cal["count"]) if c > 0]
    close("calibration.fraction_positive", [cal["fraction_positive"][i] for i in nonempty], frac)
    close("calibration.mean_predicted", [cal["mean_predicted"][i] for i in nonempty], mean)
    counts = np.array([cal["count"][i] for i in nonempty])
    close("calibration.ece", cal["ece"], float(np.sum(counts / len(y) * np.abs(mean - frac))))
    op = m["operating_point"]
    close("operating_point.sensitivity", op["sensitivity"], M.recall_score(y, pred))
    close("operating_point.specificity", op["specificity"], M.recall_score(y, pred, pos_label=0))
    if min_sens is not None and op["sensitivity"] < min_sens:
        failures.append(f"operating point sensitivity {op['sensitivity']:.4f} < {min_sens}")

    if failures:
        for f in failures:
            print("FAIL:", f, file=sys.stderr)
        return 1
    print(f"{len(y)} predictions: every metric equals scikit-learn's within {TOL}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
