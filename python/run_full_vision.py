#!/usr/bin/env python3
"""Smoke run of the FULL OmniDrive vision reference (eva_base_tinyllama sizes) with seeded random
weights on synthetic inputs: two frames of one scene, printing every stage's shape and norm.

  PYTHONPATH=python python3 python/run_full_vision.py --device cuda
  PYTHONPATH=python python3 python/run_full_vision.py --device cpu --frames 1   # slow (~minutes)

Float32 throughout (TF32 is switched off on CUDA so the numbers are true float32).
"""

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from omnidrive_ref import OmniDriveConfig, OmniDriveVision, init_random  # noqa: E402
from omnidrive_ref.synthetic import make_frame  # noqa: E402


def describe(name, t):
    if isinstance(t, dict):
        for k, v in t.items():
            describe(f"{name}.{k}", v)
        return
    if not torch.is_tensor(t):
        return
    if t.is_floating_point():
        x = t.double()
        print(f"  {name:34s} {str(tuple(t.shape)):28s} {str(t.dtype)[6:]:8s} "
              f"norm={x.norm():.6e} mean={x.mean():+.4e} finite={bool(torch.isfinite(t).all())}")
    else:
        print(f"  {name:34s} {str(tuple(t.shape)):28s} {str(t.dtype)[6:]:8s} "
              f"sum={int(t.long().sum())}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--frames", type=int, default=2)
    ap.add_argument("--tiny", action="store_true", help="use the tiny config instead (quick check)")
    ap.add_argument("--drop-one2many", action="store_true")
    args = ap.parse_args()

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device(args.device)
    cfg = OmniDriveConfig.tiny() if args.tiny else OmniDriveConfig.full()
    t0 = time.perf_counter()
    model = OmniDriveVision(cfg)
    init_random(model, args.seed)
    model = model.to(dev).eval()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"config: {'tiny' if args.tiny else 'full (eva_base_tinyllama)'}; "
          f"{len(model.state_dict())} state-dict keys, {n_params / 1e6:.3f} M parameters; "
          f"built in {time.perf_counter() - t0:.1f} s on {dev}")

    state = model.initial_state()
    for i in range(args.frames):
        frame = make_frame(cfg, 0.5 * i, seed=args.seed * 1000 + i, is_first_frame=(i == 0))
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = model.forward_frame(frame, state, drop_one2many=args.drop_one2many)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        print(f"frame {i} (t = {0.5 * i:.1f} s, first = {i == 0}): {dt * 1e3:.1f} ms")
        for k, v in out.items():
            if k == "state":
                for f, t in v.as_dict().items():
                    describe("state." + f, t)
            else:
                describe(k, v)
        b = out["boxes"]
        print(f"  top box: score {float(b['scores'][0]):.4f} label {int(b['labels'][0])} "
              f"query {int(b['query'][0])} box {[round(float(x), 3) for x in b['bboxes'][0]]}")
        state = out["state"]
    if dev.type == "cuda":
        print(f"peak CUDA memory: {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
