#!/usr/bin/env python3
"""Interop check: a histoscan checkpoint opens in PyTorch and gives histoscan's probabilities.

  check_pytorch_interop.py CHECKPOINT PREDICTIONS.csv PCAM_X.h5 PEER.py

Loads CHECKPOINT with torch.jit.load, copies its parameters and buffers into seed_cnn() of the
peer script (../shared/peers/torch_seed_recipe.py), applies the peer's own preprocessing to the
patches of PCAM_X.h5 and compares the probabilities with PREDICTIONS.csv (id = row number,
written by `histoscan evaluate`) within 1e-5. Exit 0 when they agree.
"""
import csv, importlib.util, json, sys

import h5py
import torch


def main():
    ckpt, preds, x_path, peer_path = sys.argv[1:5]
    spec = importlib.util.spec_from_file_location("peer", peer_path)
    peer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peer)

    loaded = torch.jit.load(ckpt, map_location="cpu")
    meta = json.loads(loaded.histoscan_metadata)
    assert meta["model"] == "seed-cnn", meta["model"]
    state = {k: v for k, v in loaded.named_parameters()}
    state.update({k: v for k, v in loaded.named_buffers()})
    net = peer.seed_cnn()
    missing, unexpected = net.load_state_dict(state, strict=True), None
    net.eval()

    with h5py.File(x_path, "r") as f:
        x = torch.from_numpy(f["x"][:])  # N x 96 x 96 x 3 uint8
    x = x.permute(0, 3, 1, 2).float() / 255.0  # what transforms.ToTensor() gives
    with torch.no_grad():
        probs = torch.sigmoid(net(peer.standardize(x))).flatten().double()

    theirs = {}
    with open(preds) as f:
        for row in csv.DictReader(f):
            theirs[int(row["id"])] = float(row["probability"])
    assert len(theirs) == len(probs), (len(theirs), len(probs))
    worst = max(abs(theirs[i] - probs[i].item()) for i in range(len(probs)))
    spread = (probs.max() - probs.min()).item()
    print(f"{len(probs)} patches, probabilities from {probs.min().item():.4f} to {probs.max().item():.4f}, "
          f"largest difference {worst:.2e}")
    if spread < 1e-3:
        print("FAIL: the probabilities hardly vary; the comparison would prove nothing", file=sys.stderr)
        return 1
    if worst > 1e-5:
        print("FAIL: PyTorch and histoscan disagree", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
