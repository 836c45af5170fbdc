#!/usr/bin/env python3
"""The peer's training loop (../shared/peers/torch_seed_recipe.py, --preload) on a GPU, on synthetic
patches: what histoscan-engine's CUDA figures are compared with (scripts/engine_gpu_check.sh).

It imports the peer's own network, standardization and flips, keeps the patches in memory as
the peer's --preload does (float32 in [0, 1], a shuffled DataLoader of batch 128), moves each
batch to the GPU and trains with Adam(1e-3) and BCEWithLogitsLoss; --amp wraps the forward pass
in torch.autocast(bfloat16), as a PyTorch user would. The first epoch is warm-up (cuDNN's kernel
choice); the JSON line reports the epochs after it, like histoscan-engine.

  torch_peer_gpu.py --peer PATH/torch_seed_recipe.py [--patches 65536] [--epochs 2] [--amp]
"""
import argparse, importlib.util, json, time

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--peer", required=True, help="path of torch_seed_recipe.py")
    p.add_argument("--patches", type=int, default=65536)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--amp", action="store_true")
    p.add_argument("--seed", type=int, default=13)
    a = p.parse_args()
    if a.epochs < 2:
        p.error("--epochs must be at least 2 (the first is warm-up)")
    spec = importlib.util.spec_from_file_location("peer", a.peer)
    peer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peer)

    torch.manual_seed(a.seed)
    dev = torch.device("cuda")
    x = torch.randint(0, 256, (a.patches, 3, 96, 96), dtype=torch.uint8).float().div_(255)
    y = torch.randint(0, 2, (a.patches,))
    loader = DataLoader(TensorDataset(x, y), batch_size=a.batch, shuffle=True, num_workers=0)
    net = peer.seed_cnn().to(dev)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    loss_fn = nn.BCEWithLogitsLoss()
    secs = []
    for _ in range(a.epochs):
        net.train()
        torch.cuda.synchronize()
        t = time.perf_counter()
        total = 0.0
        for xb, yb in loader:
            xb = peer.standardize(peer.flip_batch(xb.to(dev, non_blocking=True)))
            opt.zero_grad()
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=a.amp):
                logits = net(xb).flatten()
            loss = loss_fn(logits.float(), yb.to(dev).float())
            loss.backward()
            opt.step()
            total += loss.item() * len(yb)
        torch.cuda.synchronize()
        secs.append(time.perf_counter() - t)
    counted = secs[1:]
    print(json.dumps({"peer": "torch_seed_recipe (preload) on GPU", "device": torch.cuda.get_device_name(0),
                      "torch": torch.__version__, "precision": "bfloat16 autocast" if a.amp else "float32",
                      "patches": a.patches, "batch": a.batch, "epoch_seconds": [round(s, 3) for s in secs],
                      "train_images_per_s": round(a.patches * len(counted) / sum(counted), 1)}))


if __name__ == "__main__":
    main()
