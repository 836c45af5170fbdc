"""The seed notebook's flow on histoscan's Python module: a held-out split, training, a
classification report, a confusion matrix, a ROC curve and a Kaggle submission.

    PYTHONPATH=build/python python3 examples/notebook.py KAGGLE_DIR --out notebook-run

KAGGLE_DIR holds train/ (the .tif patches), train_labels.csv and test/, as Kaggle's
"Histopathologic Cancer Detection" ships them (`histoscan synth DIR` writes such a folder).
"""
import argparse
import pathlib

import matplotlib
import numpy as np

import histoscan

matplotlib.use("Agg")  # files, not windows
import matplotlib.pyplot as plt  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("data", type=pathlib.Path, help="Kaggle folder: train/, train_labels.csv, test/")
ap.add_argument("--out", type=pathlib.Path, default=pathlib.Path("notebook-run"))
ap.add_argument("--per-class", type=int, default=2000, help="training patches of each class (the notebook: 40000)")
ap.add_argument("--epochs", type=int, default=10)
args = ap.parse_args()
args.out.mkdir(parents=True, exist_ok=True)

# Hold out 10% of the labelled patches for validation: patches, not copies of the training set.
images, labels, ids = histoscan.read_patches(args.data / "train")
valid = np.random.default_rng(0).random(len(ids)) < 0.1
for name, rows in (("train_split.csv", ~valid), ("valid_split.csv", valid)):
    with open(args.out / name, "w") as f:
        f.write("id,label\n" + "".join(f"{i},{y}\n" for i, y, r in zip(ids, labels, rows) if r))

# Train the default recipe (early stopping and learning rate on plateau included) on a balanced sample.
model = histoscan.train(args.data / "train", args.out / "run", labels=args.out / "train_split.csv",
                        valid=args.data / "train", valid_labels=args.out / "valid_split.csv", allow_missing=True,
                        per_class=args.per_class, epochs=args.epochs, overwrite=True)

# Classification report and confusion matrix on the held-out patches.
probs = model.predict(images[valid])
m = histoscan.metrics(labels[valid], probs, threshold=model.threshold)
print(f"{'':>12}{'precision':>10}{'recall':>10}{'f1-score':>10}{'support':>10}")
for c in ("0", "1"):
    s = m["classes"][c]
    print(f"{c:>12}{s['precision']:10.2f}{s['recall']:10.2f}{s['f1']:10.2f}{s['support']:10d}")
print(f"{'accuracy':>12}{m['accuracy']:30.2f}\nconfusion matrix (rows: true 0, 1):\n{np.array(m['confusion_matrix'])}")

# ROC curve.
plt.plot([0, 1], [0, 1], "--")
plt.plot(m["roc"]["fpr"], m["roc"]["tpr"], label=f"area = {m['auc']:.3f}")
plt.xlabel("False positive rate")
plt.ylabel("True positive rate")
plt.title("ROC curve")
plt.legend(loc="best")
plt.savefig(args.out / "roc.png", dpi=100)

# Score the test patches into Kaggle's submission format.
test_images, _, test_ids = histoscan.read_patches(args.data / "test")
with open(args.out / "submission.csv", "w") as f:
    f.write("id,label\n" + "".join(f"{i},{p:.6f}\n" for i, p in zip(test_ids, model.predict(test_images))))
print(f"AUC {m['auc']:.4f} on {valid.sum()} held-out patches; wrote {args.out}/roc.png and {args.out}/submission.csv")
