#!/usr/bin/env python3
"""How many of --tta's 8 dihedral views a checkpoint needs: scores each view apart and every subset.

  scripts/tta_views.py CHECKPOINT... [--data DIR] [--threads N] [--json FILE]

For each CHECKPOINT (a best.pt, a built-in model's name), scores DATA (default
../shared/data/pcam-subset/valid beside the repository) once in each of the 8 dihedral views
(k quarter turns, then a left-right mirror or not), through histoscan's Python module
(build/python), and prints the AUC and accuracy (cut-off 0.5) of the average over each subset
of views below: 1 (the image as it is: plain scoring), 2 (with its mirror: `--tta=2`), 2 (with
its half turn), 4 (the quarter turns), 4 (the mirrors and half turn, no transposes: `--tta=4`),
8 (`--tta`). Each of `--tta=2`, `=4` and `=8` is also scored by histoscan and checked against
the mean of its views here.
Last, with two or more checkpoints, the average of all their 8-view probabilities.
Every figure comes from `histoscan.metrics` on those probabilities; nothing is written but --json.
"""
import argparse, json, os, sys, time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "build", "python"))
import histoscan  # noqa: E402

# (quarter turns, mirrored) of each view; view 0 is the image as it is.
VIEWS = [(k, m) for m in (False, True) for k in range(4)]
SUBSETS = {
    "1 (as is)": [(0, False)],
    "2 (mirror: --tta=2)": [(0, False), (0, True)],
    "2 (half turn)": [(0, False), (2, False)],
    "4 (quarter turns)": [(k, False) for k in range(4)],
    "4 (mirrors, half turn: --tta=4)": [(0, False), (0, True), (2, False), (2, True)],
    "8 (--tta)": VIEWS,
}
# The subsets histoscan's --tta=N scores, checked against it.
TTA = {2: "2 (mirror: --tta=2)", 4: "4 (mirrors, half turn: --tta=4)", 8: "8 (--tta)"}


def view(images, k, mirrored):
    """images N x H x W x 3 turned k quarter turns, then mirrored left-right if asked."""
    out = np.rot90(images, k, axes=(1, 2))
    if mirrored:
        out = out[:, :, ::-1]
    return np.ascontiguousarray(out)


def score(labels, probs):
    m = histoscan.metrics(labels, probs.astype(np.float32), bootstrap=0)
    return m["auc"], m["accuracy"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "pcam-subset", "valid"))
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json", help="also write the figures here")
    a = ap.parse_args()
    histoscan.set_threads(a.threads)
    images, labels, _ = histoscan.read_patches(a.data)
    if (labels < 0).any():
        sys.exit(f"{a.data}: some patches have no label; give labelled data (class folders 0/ and 1/)")
    print(f"{a.data}: {len(labels)} patches, {int(labels.sum())} tumour")
    results, all8 = {}, []
    for ckpt in a.checkpoints:
        model = histoscan.load(ckpt, device="cpu")
        start = time.time()
        per_view = {v: model.predict(view(images, *v)) for v in VIEWS}
        seconds = time.time() - start
        means = {name: np.mean([per_view[v] for v in views], axis=0) for name, views in SUBSETS.items()}
        rows = {name: score(labels, probs) for name, probs in means.items()}
        all8.append(means["8 (--tta)"])
        # --tta=N itself must give the same numbers as its views averaged here.
        diff = 0.0
        for n, name in TTA.items():
            tta = model.predict(images, tta=n)
            diff = max(diff, float(np.abs(tta - means[name]).max()))
        results[ckpt] = {"views": rows, "max_abs_diff_vs_tta": diff, "seconds_8_views": seconds}
        print(f"\n{ckpt} (8 views scored in {seconds:.0f} s; |mean of the views - --tta=N| <= {diff:.1e} for N = 2, 4, 8)")
        print("| views | val AUC | accuracy |\n| --- | ---: | ---: |")
        for name, (auc, acc) in rows.items():
            print(f"| {name} | {auc:.4f} | {acc:.4f} |")
    if len(all8) > 1:
        auc, acc = score(labels, np.mean(all8, axis=0))
        results["average of all, 8 views"] = {"auc": auc, "accuracy": acc}
        print(f"\naverage of the {len(all8)} checkpoints' 8-view probabilities: AUC {auc:.4f}, accuracy {acc:.4f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
