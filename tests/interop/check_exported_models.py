#!/usr/bin/env python3
"""Interop check: models written by `histoscan export` run without histoscan and agree with it.

  check_exported_models.py PREDICTIONS.csv PCAM_X.h5 [--torchscript PT] [--wsinfer DIR --schema JSON]
                           [--onnx FILE]

PREDICTIONS.csv is `histoscan evaluate`'s on PCAM_X.h5 (id = row number) with the same checkpoint.
Patches go in as torchvision's ToTensor gives them (float RGB in [0, 1], N x 3 x 96 x 96).
  --torchscript: torch.jit.load(PT)(x) are the probabilities, within 1e-5;
  --wsinfer:     config.json is valid against WSInfer's schema (jsonschema), and WSInfer's own
                 handling of the outputs (softmax over num_classes, the "tumor" column) gives the
                 probabilities within 1e-5;
  --onnx:        onnx.checker passes, and OpenCV's DNN module (cv2.dnn) gives them within 1e-4.
Exit 0 when every check given passes.
"""
import argparse, csv, json, os, sys

import h5py
import numpy as np


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def compare(name, ours, theirs, tol):
    ours, theirs = np.asarray(ours, dtype=np.float64).ravel(), np.asarray(theirs, dtype=np.float64).ravel()
    if ours.shape != theirs.shape:
        fail(f"{name}: {theirs.size} probabilities for {ours.size} patches")
    worst = float(np.max(np.abs(ours - theirs)))
    print(f"{name}: {ours.size} patches, probabilities {theirs.min():.4f} to {theirs.max():.4f}, largest difference {worst:.2e}")
    if theirs.max() - theirs.min() < 1e-3:
        fail(f"{name}: the probabilities hardly vary; the comparison would prove nothing")
    if not worst <= tol:
        fail(f"{name}: differs from histoscan by {worst:.2e} (over {tol:g})")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("predictions")
    p.add_argument("x_h5")
    p.add_argument("--torchscript")
    p.add_argument("--wsinfer")
    p.add_argument("--schema")
    p.add_argument("--onnx")
    a = p.parse_args()
    with open(a.predictions) as f:
        rows = {int(r["id"]): float(r["probability"]) for r in csv.DictReader(f)}
    ours = np.array([rows[i] for i in range(len(rows))])
    with h5py.File(a.x_h5, "r") as f:
        x = f["x"][:].astype(np.float32) / 255.0  # N x 96 x 96 x 3, as ToTensor scales
    x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    if len(x) != len(ours):
        fail(f"{len(ours)} predictions for {len(x)} patches")

    if a.torchscript or a.wsinfer:
        import torch
        with torch.no_grad():
            if a.torchscript:
                m = torch.jit.load(a.torchscript, map_location="cpu")
                compare("torchscript", ours, m(torch.from_numpy(x)).numpy(), 1e-5)
            if a.wsinfer:
                config = json.load(open(os.path.join(a.wsinfer, "config.json")))
                if a.schema:
                    import jsonschema
                    jsonschema.validate(config, json.load(open(a.schema)))  # raises on an invalid config
                    print("wsinfer: config.json is valid against " + a.schema)
                m = torch.jit.load(os.path.join(a.wsinfer, "torchscript_model.pt"), map_location="cpu")
                logits = m(torch.from_numpy(x))
                # WSInfer (wsinfer/modellib/run_inference.py): softmax when there are several outputs.
                if logits.dim() != 2 or logits.shape[1] != config["num_classes"]:
                    fail(f"wsinfer: outputs {tuple(logits.shape)}, config says num_classes {config['num_classes']}")
                probs = torch.nn.functional.softmax(logits, dim=1)
                compare("wsinfer", ours, probs[:, config["class_names"].index("tumor")].numpy(), 1e-5)
    if a.onnx:
        import cv2
        import onnx
        onnx.checker.check_model(onnx.load(a.onnx))
        print("onnx: onnx.checker passes (opset %d)" % onnx.load(a.onnx).opset_import[0].version)
        net = cv2.dnn.readNetFromONNX(a.onnx)
        net.setInput(x, "image")
        compare("onnx in cv2.dnn", ours, net.forward("probability"), 1e-4)
    return 0


if __name__ == "__main__":
    sys.exit(main())
