#!/usr/bin/env python3
"""Where a GPU training step of seed-cnn spends its time, by memory layout and precision.

Runs the peer's own network (../shared/peers/torch_seed_recipe.py: the same layers as
histoscan's seed-cnn) on one fixed batch already on the GPU: forward, binary cross-entropy,
backward and a foreach Adam step, with nothing else in the step (no data movement, no
augmentation). For each of NCHW and channels-last, float32 and bfloat16 / float16 autocast it
prints the step time (CUDA events, median of --steps steps after --warmup) and patches/s, then
for two of them the CUDA kernels that take the most time (torch.profiler). One JSON line per
configuration on stdout, the tables on stderr.

  gpu_step_profile.py --peer PATH/torch_seed_recipe.py [--batch 128] [--steps 50]
"""
import argparse, importlib.util, json, statistics, sys

import torch
import torch.nn as nn


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--peer", required=True, help="path of torch_seed_recipe.py")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=15)
    p.add_argument("--top", type=int, default=12, help="kernels listed per profiled configuration")
    a = p.parse_args()
    spec = importlib.util.spec_from_file_location("peer", a.peer)
    peer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peer)
    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda")
    torch.manual_seed(0)
    x0 = torch.rand(a.batch, 3, 96, 96, device=dev)
    y = torch.randint(0, 2, (a.batch,), device=dev).float()
    loss_fn = nn.BCEWithLogitsLoss()

    def setup(layout, dtype):
        fmt = torch.channels_last if layout == "channels-last" else torch.contiguous_format
        net = peer.seed_cnn().to(dev).to(memory_format=fmt)
        opt = torch.optim.Adam(net.parameters(), 1e-3, foreach=True)
        x = x0.contiguous(memory_format=fmt)

        def step():
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
                logits = net(x).flatten()
            loss = loss_fn(logits.float(), y)
            loss.backward()
            opt.step()
        return step

    configs = [("nchw", None), ("channels-last", None), ("nchw", torch.bfloat16), ("channels-last", torch.bfloat16),
               ("channels-last", torch.float16)]
    steps = {}
    for layout, dtype in configs:
        name = f"{layout} {str(dtype).replace('torch.', '') if dtype else 'float32'}"
        step = setup(layout, dtype)
        for _ in range(a.warmup):
            step()
        times = []
        for _ in range(a.steps):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            step()
            e.record()
            e.synchronize()
            times.append(s.elapsed_time(e))
        ms = statistics.median(times)
        steps[name] = step
        row = {"config": name, "batch": a.batch, "step_ms": round(ms, 3), "patches_per_s": round(a.batch / ms * 1000)}
        print(json.dumps(row), flush=True)
        print(f"{name:28s} {ms:8.2f} ms/step  {a.batch / ms * 1000:10.0f} patches/s", file=sys.stderr, flush=True)

    from torch.profiler import ProfilerActivity, profile
    for name in ("nchw float32", "channels-last bfloat16"):
        step = steps[name]
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(10):
                step()
            torch.cuda.synchronize()
        print(f"\n== {name}: CUDA kernels over 10 steps", file=sys.stderr)
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=a.top, max_name_column_width=70), file=sys.stderr)


if __name__ == "__main__":
    main()
