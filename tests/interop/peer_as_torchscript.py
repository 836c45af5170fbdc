#!/usr/bin/env python3
"""A model made elsewhere: the PyTorch peer trained for one epoch, traced, saved as WSInfer does.

  peer_as_torchscript.py PEER.py TRAIN_CLASS_FOLDERS X.h5 Y.h5 OUT [--per-class N]

Trains ../shared/peers/torch_seed_recipe.py for one epoch on N patches per class of
TRAIN_CLASS_FOLDERS (links in OUT/train), traces its network with its own preprocessing
(per-image standardization) in front (torch.jit.trace), and writes
  OUT/model/torchscript_model.pt and OUT/model/config.json   (WSInfer's layout; one output, sigmoid)
  OUT/peer_predictions.csv   the peer's own probabilities of X.h5's patches (id,label,probability)
"""
import argparse, csv, importlib.util, json, os, subprocess, sys

import h5py
import torch


class WithPreprocessing(torch.nn.Module):
    def __init__(self, net, standardize):
        super().__init__()
        self.net = net
        self.standardize = standardize

    def forward(self, x):
        return self.net(self.standardize(x))


def main():
    p = argparse.ArgumentParser()
    for name in ("peer", "train", "x_h5", "y_h5", "out"):
        p.add_argument(name)
    p.add_argument("--per-class", type=int, default=300)
    a = p.parse_args()
    spec = importlib.util.spec_from_file_location("peer", a.peer)
    peer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peer)

    for c in ("0", "1"):
        d = os.path.join(a.out, "train", c)
        os.makedirs(d, exist_ok=True)
        for f in sorted(os.listdir(os.path.join(a.train, c)))[: a.per_class]:
            os.symlink(os.path.abspath(os.path.join(a.train, c, f)), os.path.join(d, f))
    weights = os.path.join(a.out, "peer.pt")
    # batch 16: 38 steps in the epoch (at its default 128, 5 steps left every probability within 1e-5 of
    # the others, where ranks and so AUC are float rounding)
    subprocess.run([sys.executable, a.peer, "train", "--data", os.path.join(a.out, "train"), "--epochs", "1", "--preload", "--batch", "16",
                    "--weights", weights, "--threads", str(min(2, os.cpu_count()))], check=True, stdout=subprocess.DEVNULL)
    net = peer.seed_cnn()
    net.load_state_dict(torch.load(weights))
    net.eval()

    with h5py.File(a.x_h5, "r") as f:
        x = torch.from_numpy(f["x"][:]).permute(0, 3, 1, 2).float() / 255.0  # what ToTensor gives
    with h5py.File(a.y_h5, "r") as f:
        y = torch.from_numpy(f["y"][:]).flatten()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=256)
    probs = peer.predict(net, loader)  # the peer's own scoring
    with open(os.path.join(a.out, "peer_predictions.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "label", "probability"])
        for i, (label, prob) in enumerate(zip(y.tolist(), probs.tolist())):
            w.writerow([i, int(label), repr(prob)])

    model_dir = os.path.join(a.out, "model")
    os.makedirs(model_dir, exist_ok=True)
    with torch.no_grad():
        traced = torch.jit.trace(WithPreprocessing(net, peer.standardize), x[:4])
    traced.save(os.path.join(model_dir, "torchscript_model.pt"))
    config = {"num_classes": 1, "class_names": ["tumor"], "patch_size_pixels": 96, "spacing_um_px": 0.972,
              "transform": [{"name": "ToTensor"}]}
    with open(os.path.join(model_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    print(f"peer trained 1 epoch on {2 * a.per_class} patches, traced to {model_dir}; scored {len(probs)} patches")


if __name__ == "__main__":
    main()
