#!/usr/bin/env python3
"""Accuracy ablation on PCam: trains one recipe per call and keeps a table of what each reached.

  scripts/ablation.py run NAME --seed S [-- histoscan train flags...]
      trains `histoscan train DATA/train --valid DATA/valid --seed S --out RUNS/NAME-sS FLAGS`,
      times it (wall clock, decoding included) and appends one JSON line to RUNS/ablation.jsonl:
      recipe, flags, network, parameters, GFLOP per patch, minutes, epochs, and the best epoch's
      (lowest val_loss: the weights best.pt holds) val AUC and accuracy.
  scripts/ablation.py run NAME --seed S --resume
      continues that run where it was interrupted (its resume.pt) and then records its row as
      above, marked resumed (its minutes are this call's only).
  scripts/ablation.py tta NAME --seed S
      evaluates that run's best.pt and last.pt on DATA/valid with --tta (the 8 dihedral views) and
      adds their AUC and accuracy to its row.
  scripts/ablation.py ensemble RUN RUN... [--which best|last]
      averages the --tta probabilities that `tta` wrote for each RUN (a folder NAME-sS in RUNS,
      e.g. ep40-s13) patch by patch and prints each run's and the average's val AUC and accuracy
      (cut-off 0.5): what an ensemble of those trained networks would score, and how closely each
      two runs' probabilities correlate (scored by `histoscan metrics`, files in RUNS/ensemble).
      Trains nothing.
  scripts/ablation.py table
      prints every line of RUNS/ablation.jsonl as a Markdown table (the one in docs/accuracy.md).

DATA: --data (default ../shared/data/pcam-subset beside the repository); RUNS: --runs (default
build/ablation); the binary: --histoscan (default build/histoscan). Nothing is written outside
RUNS. Every figure comes from the run itself (config.json, history.csv, `histoscan models`).
"""
import argparse, csv, json, os, shlex, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def model_sizes(histoscan, model=None, options=None):
    """{name: (parameters, GFLOP per patch)} from `histoscan models` (one network with options)."""
    cmd = [histoscan, "models"]
    if model:
        cmd += ["--model", model] + [f"--model-option={k}={json.dumps(v) if not isinstance(v, str) else v}"
                                     for k, v in (options or {}).items()]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    sizes = {}
    for line in out.splitlines():
        # seed-cnn  (786977 parameters, 0.1657 GFLOP per patch)  description
        name, _, rest = line.partition("  (")
        if not rest:
            continue
        params, _, rest = rest.partition(" parameters, ")
        gflop = rest.partition(" GFLOP")[0]
        sizes[name.strip()] = (int(params), float(gflop))
    return sizes


def run(a, flags):
    out = os.path.join(a.runs, f"{a.name}-s{a.seed}")
    flags_file = os.path.join(out, "ablation-flags.json")
    if a.resume:
        # The interrupted run's own flags (config.json holds its settings; this file, the flags as given).
        if flags:
            sys.exit("ablation.py: --resume takes no flags after '--': the run continues with its own")
        if not os.path.exists(os.path.join(out, "resume.pt")):
            sys.exit(f"ablation.py: {out}/resume.pt does not exist; nothing to resume")
        flags = json.load(open(flags_file)) if os.path.exists(flags_file) else []
        cmd = [a.histoscan, "train", "--resume", out, "--no-progress"]
    else:
        cmd = [a.histoscan, "train", os.path.join(a.data, "train"), "--valid", os.path.join(a.data, "valid"),
               "--seed", str(a.seed), "--out", out, "--overwrite", "--no-progress"] + flags
        os.makedirs(out, exist_ok=True)
        with open(flags_file, "w") as f:
            json.dump(flags, f)
    print("+", " ".join(shlex.quote(c) for c in cmd), flush=True)
    t0 = time.time()
    rc = subprocess.run(cmd).returncode
    minutes = (time.time() - t0) / 60
    if rc != 0:
        sys.exit(f"ablation.py: histoscan train failed (exit {rc}); nothing recorded")
    config = json.load(open(os.path.join(out, "config.json")))
    with open(os.path.join(out, "history.csv")) as f:
        history = list(csv.DictReader(f))
    best = min(history, key=lambda r: float(r["val_loss"]))  # the epoch best.pt holds
    params, gflop = model_sizes(a.histoscan, config["model"], config.get("model_options")).get(config["model"], (None, None))
    row = {"name": a.name, "recipe": config.get("recipe", "default"), "flags": " ".join(flags), "model": config["model"],
           "parameters": params, "gflop_per_patch": gflop, "seed": a.seed, "threads": config["threads"],
           "minutes": round(minutes, 1), "resumed": bool(a.resume), "epochs": len(history), "best_epoch": int(best["epoch"]),
           "val_auc": float(best["val_auc"]), "val_accuracy": float(best["val_accuracy"]),
           "last_val_auc": float(history[-1]["val_auc"]), "last_val_accuracy": float(history[-1]["val_accuracy"]),
           "train_patches": config["train_patches"],
           "valid_patches": config["valid_patches"], "run": out,
           "date": time.strftime("%Y-%m-%d"), "cpu": cpu_model()}
    os.makedirs(a.runs, exist_ok=True)
    with open(os.path.join(a.runs, "ablation.jsonl"), "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row))


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def tta(a):
    path = os.path.join(a.runs, "ablation.jsonl")
    rows = [json.loads(line) for line in open(path) if line.strip()] if os.path.exists(path) else []
    matches = [r for r in rows if r["name"] == a.name and r["seed"] == a.seed]
    if not matches:
        sys.exit(f"ablation.py: no row {a.name} with seed {a.seed} in {path}; record it with 'ablation.py run' first")
    row = matches[-1]
    for which in ("best", "last"):
        out = os.path.join(row["run"], f"eval-tta-{which}")
        cmd = [a.histoscan, "evaluate", os.path.join(row["run"], f"{which}.pt"), os.path.join(a.data, "valid"),
               "--tta", "--out", out, "--overwrite", "--bootstrap", "0"]
        print("+", " ".join(shlex.quote(c) for c in cmd), flush=True)
        if subprocess.run(cmd, stdout=subprocess.DEVNULL).returncode != 0:
            sys.exit("ablation.py: histoscan evaluate failed; nothing recorded")
        metrics = json.load(open(os.path.join(out, "metrics.json")))
        row[f"{which}_tta_auc"], row[f"{which}_tta_accuracy"] = metrics["auc"], metrics["accuracy"]
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    os.replace(tmp, path)
    print(json.dumps(row))


def ensemble(a, runs):
    members = {}
    for run_name in runs:
        path = os.path.join(a.runs, run_name, f"eval-tta-{a.which}", "predictions.csv")
        if not os.path.exists(path):
            sys.exit(f"ablation.py: {path} does not exist; run 'ablation.py tta NAME --seed S' for {run_name} first")
        with open(path) as f:
            members[run_name] = {r["id"]: (int(r["label"]), float(r["probability"])) for r in csv.DictReader(f)}
    ids = sorted(next(iter(members.values())))
    for run_name, m in members.items():
        if sorted(m) != ids:
            sys.exit(f"ablation.py: {run_name}'s predictions cover other patches than {runs[0]}'s; evaluate both on the same data")
    labels = [members[runs[0]][i][0] for i in ids]
    probs = {run_name: [m[i][1] for i in ids] for run_name, m in members.items()}
    average = [sum(p[k] for p in probs.values()) / len(runs) for k in range(len(ids))]

    def report(name, predictions):
        # histoscan metrics scores a predictions CSV as evaluate does (AUC, accuracy at 0.5).
        out = os.path.join(a.runs, "ensemble", name)
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "predictions.csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "label", "probability"])
            w.writerows(zip(ids, labels, predictions))
        cmd = [a.histoscan, "metrics", os.path.join(out, "predictions.csv"), "--bootstrap", "0", "--out", out, "--overwrite"]
        if subprocess.run(cmd, stdout=subprocess.DEVNULL).returncode != 0:
            sys.exit("ablation.py: histoscan metrics failed")
        metrics = json.load(open(os.path.join(out, "metrics.json")))
        print(f"{name:40s} AUC {metrics['auc']:.4f}  accuracy {metrics['accuracy']:.4f}")

    for run_name in runs:
        report(f"{run_name}-{a.which}-tta", probs[run_name])
    report("average-" + "+".join(runs), average)
    for x, y in ((x, y) for k, x in enumerate(runs) for y in runs[k + 1:]):
        print(f"correlation of {x}'s and {y}'s probabilities: {correlation(probs[x], probs[y]):.3f}")


def correlation(a, b):
    """Pearson's r of two equally long lists."""
    mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
    cov = sum((u - mean_a) * (v - mean_b) for u, v in zip(a, b))
    return cov / (sum((u - mean_a) ** 2 for u in a) * sum((v - mean_b) ** 2 for v in b)) ** 0.5


def table(a):
    path = os.path.join(a.runs, "ablation.jsonl")
    if not os.path.exists(path):
        sys.exit(f"ablation.py: {path} does not exist; record runs with 'ablation.py run' first")
    rows = [json.loads(line) for line in open(path) if line.strip()]
    cols = ["name", "recipe", "flags", "model", "parameters", "gflop_per_patch", "minutes", "epochs", "best_epoch",
            "val_auc", "val_accuracy", "last_val_auc", "last_val_accuracy", "best_tta_auc", "best_tta_accuracy",
            "last_tta_auc", "last_tta_accuracy", "seed"]
    print("| " + " | ".join(cols) + " |")
    print("|" + " --- |" * len(cols))
    for r in rows:
        cells = [r.get(c) for c in cols]
        cells = [f"`{v}`" if c == "flags" and v else ("-" if v in (None, "") else f"{v:.4f}" if isinstance(v, float) and ("auc" in c or "accuracy" in c) else str(v))
                 for c, v in zip(cols, cells)]
        print("| " + " | ".join(cells) + " |")


def main():
    argv = sys.argv[1:]
    flags = []
    if "--" in argv:
        i = argv.index("--")
        argv, flags = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["run", "tta", "ensemble", "table"])
    p.add_argument("names", nargs="*", metavar="name")
    p.add_argument("--which", choices=["best", "last"], default="best", help="ensemble: each run's best.pt or last.pt")
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--resume", action="store_true",
                   help="run: continue the interrupted run NAME-sSEED from its resume.pt (minutes: this call's only)")
    p.add_argument("--data", default=os.path.join(os.path.dirname(ROOT), "shared", "data", "pcam-subset"))
    p.add_argument("--runs", default=os.path.join(ROOT, "build", "ablation"))
    p.add_argument("--histoscan", default=os.path.join(ROOT, "build", "histoscan"))
    a = p.parse_args(argv)
    if a.what == "ensemble":
        if len(a.names) < 2:
            p.error("ensemble needs two or more runs (folders NAME-sS in RUNS)")
        return ensemble(a, a.names)
    if len(a.names) > 1:
        p.error(f"{a.what} takes one NAME")
    a.name = a.names[0] if a.names else None
    if a.what == "run":
        if not a.name:
            p.error("run needs a NAME for the row")
        run(a, flags)
    elif a.what == "tta":
        if not a.name:
            p.error("tta needs the NAME of a row")
        tta(a)
    else:
        table(a)


if __name__ == "__main__":
    main()
