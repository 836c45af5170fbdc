#!/usr/bin/python3
"""How far one training step's gradients are from float64's, by memory layout and precision.

  /usr/bin/python3 bench/layout_exactness.py [--threads 1]

Builds seed-cnn (the peer's network, dropout off) and a replica of histoscan's `resnet` (centre
crop 64, stem 32, four stages of one basic block), takes one batch of 128 random 96x96 inputs
with random labels, and computes the binary cross-entropy gradients of every parameter in
float64 NCHW (the reference), then in float32 NCHW, float32 channels-last, and under CPU
bfloat16 autocast in both layouts. Prints, for each, the normwise relative error over all
parameters (||g - g64|| / ||g64||) and the worst single tensor. Uses Debian's python3-torch,
the same LibTorch version histoscan links. docs/performance.md quotes its output.
"""
import argparse, copy
import torch
import torch.nn as nn


def seed_cnn():
    layers, c = [], 3
    for f in (16, 32, 64, 128):
        for _ in range(3):
            layers += [nn.Conv2d(c, f, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(f)]
            c = f
        layers += [nn.MaxPool2d(3)]
    layers += [nn.Conv2d(128, 256, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(256), nn.Flatten(), nn.Linear(256, 1)]
    return nn.Sequential(*layers)


class Block(nn.Module):
    def __init__(self, i, o, stride):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(i, o, 3, stride, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU(),
                                  nn.Conv2d(o, o, 3, 1, 1, bias=False), nn.BatchNorm2d(o))
        self.shortcut = nn.Sequential(nn.Conv2d(i, o, 1, stride, bias=False), nn.BatchNorm2d(o))

    def forward(self, x):
        return torch.relu(self.body(x) + self.shortcut(x))


class CentreCrop(nn.Module):
    def forward(self, x):
        return x[:, :, 16:80, 16:80]


def resnet():
    layers, c = [CentreCrop(), nn.Conv2d(3, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU()], 32
    for stage in range(4):
        layers.append(Block(c, 32 << stage, 2))
        c = 32 << stage
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 1)]
    return nn.Sequential(*layers)


def gradients(net, x, y, amp):
    net.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        logits = net(x).reshape(-1)
    nn.functional.binary_cross_entropy_with_logits(logits.float(), y).backward()
    return {n: p.grad.double().clone() for n, p in net.named_parameters()}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    x = torch.randn(128, 3, 96, 96, dtype=torch.float64)
    y = (torch.rand(128) > 0.5).double()
    print("| network | layout, precision | error over all parameters | worst tensor | its error |")
    print("| --- | --- | ---: | --- | ---: |")
    for name, make in (("seed-cnn", seed_cnn), ("resnet", resnet)):
        torch.manual_seed(1)
        ref = make().double()
        g64 = gradients(ref, x, y, False)
        norm64 = sum((g ** 2).sum() for g in g64.values()) ** 0.5
        for layout in ("nchw", "channels-last"):
            for amp in (False, True):
                net, xx = copy.deepcopy(ref).float(), x.float()
                if layout == "channels-last":
                    net, xx = net.to(memory_format=torch.channels_last), xx.contiguous(memory_format=torch.channels_last)
                g = gradients(net, xx, y.float(), amp)
                err = {n: ((g[n] - g64[n]).norm() / g64[n].norm()).item() for n in g64}
                total = (sum(((g[n] - g64[n]) ** 2).sum() for n in g64) ** 0.5 / norm64).item()
                worst = max(err, key=err.get)
                print(f"| {name} | {layout}, {'bfloat16 autocast' if amp else 'float32'} | {100 * total:.3g}% "
                      f"| {worst} | {100 * err[worst]:.3g}% |")


if __name__ == "__main__":
    main()
