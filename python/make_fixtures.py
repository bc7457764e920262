#!/usr/bin/env python3
"""Golden fixtures for the C++ parity tests, made by the PyTorch reference.

    python/make_fixtures.py                         # tiny: tests/data/tiny_ckpt + tests/data/fixtures
    python/make_fixtures.py --full --device cuda --out /data/full_fixtures
                                                    # full size (random weights, not committed)
    python/make_fixtures.py --ckpt DIR --out OUT    # fixtures for an existing checkpoint folder

Two consecutive frames of synthetic inputs (omnidrive_ref.synthetic.make_frame: random
pre-processed images, a ring of cameras with nuScenes-like pre-processed intrinsics, an ego car
moving forward in a large global frame, timestamps 0.0 and 0.5 s). For each frame one
safetensors file holds the inputs, the state before and after the frame, every tensor the vision
reference returns, the heads' outputs recomputed in float64 on the same inputs (`ref64.*`), the
frames end to end in float64 (`e2e64.*`), the reference's own fp16/bf16 result on frame 0
(`half.*`), and the LLM side (prompt ids, spliced embeddings, teacher-forced logits for a
fixed answer, greedy generation). Tensor list: tests/data/fixtures/README.md.

Fixtures are always computed from the checkpoint folder as stored (weights read back from the
safetensors), so the C++ side that loads the same folder sees exactly the same weights.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import omnidrive_export  # noqa: E402
from omnidrive_ref import checkpoint as C  # noqa: E402
from omnidrive_ref import llm as L  # noqa: E402
from omnidrive_ref.float64 import (E2E_OUTPUTS, E2E_STATE, forward_frame_float64,  # noqa: E402
                                   heads_float64, heads_input_gain, model_float64, state_float64)
from omnidrive_ref.reduced import MODES as HALF_MODES, forward_half  # noqa: E402
from omnidrive_ref.prompt import planning_prompt, planning_prompt_ids  # noqa: E402
from omnidrive_ref.synthetic import make_frame  # noqa: E402
from omnidrive_ref.trajectory import format_answer  # noqa: E402
from omnidrive_ref.vision import STATE_FIELDS  # noqa: E402

REPO = os.path.dirname(HERE)
TINY_CKPT = os.path.join(REPO, "tests", "data", "tiny_ckpt")
TINY_FIXTURES = os.path.join(REPO, "tests", "data", "fixtures")

FRAME_TIMES = (0.0, 0.5)
FRAME_SEEDS = (101, 102)
FRAME_LOCATIONS = ("boston", "singapore")
FRAME_COMMANDS = (2, 0)
# The teacher-forced answer: spec §4.5's example trajectory.
FIXED_ANSWER_POINTS = [(4.35, 0.0), (8.72, -0.05), (13.10, -0.12), (17.51, -0.21), (21.93, -0.33),
                       (26.37, -0.47)]
# Above this many logits the teacher-forced logits are stored from row P-1 on only.
MAX_FULL_LOGITS = 2_000_000


def _flatten(prefix: str, obj, out: dict) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            _flatten(f"{prefix}.{k}", v, out)
    elif torch.is_tensor(obj):
        out[prefix] = obj.detach().cpu().contiguous()


def run_frames(vision, llm, tok, device, max_new_tokens: int, taps: bool):
    """-> list of (tensors dict, metadata dict) per frame."""
    cfg = vision.cfg
    state = vision.initial_state(device)
    # The same frames end to end in float64 (backbone, heads, memory carried in float64).
    m64 = model_float64(vision)
    state64 = state_float64(state)
    frames = []
    for i, (t, seed, loc, cmd) in enumerate(zip(FRAME_TIMES, FRAME_SEEDS, FRAME_LOCATIONS,
                                                FRAME_COMMANDS)):
        inputs = make_frame(cfg, t, seed, is_first_frame=(i == 0), command=cmd)
        # The runner computes img2lidars on the host in float32; store it as an input.
        inputs["img2lidars"] = torch.inverse(inputs["lidar2img"])
        dev_inputs = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in inputs.items()}
        out = vision.forward_frame(dev_inputs, state, keep_backbone_taps=taps)
        tensors = {}
        for k, v in inputs.items():
            if k in ("timestamp", "is_first_frame"):
                v = torch.tensor([float(v)], dtype=torch.float64 if k == "timestamp" else torch.float32)
            tensors[f"inputs.{k}"] = v.detach().cpu().contiguous()
        for f in STATE_FIELDS:
            tensors[f"state_in.{f}"] = getattr(state, f).detach().cpu().contiguous()
        new_state = out.pop("state")
        for k, v in out.items():
            _flatten(f"out.{k}", v, tensors)
        # The same heads in float64 on the same inputs (this frame's float32 backbone output and
        # incoming state): the parity tests measure the reference's own float32 error with it.
        for k, v in heads_float64(vision, out["backbone_feats"], dev_inputs, state).items():
            tensors[f"ref64.{k}"] = v.detach().cpu().contiguous()
        # The heads' gain on a 1e-4 perturbation of their input features: end to end, our
        # backbone's error times this is what the heads' outputs can be expected to inherit.
        for k, v in heads_input_gain(vision, out["backbone_feats"], dev_inputs, state, out,
                                     seed=1000 + i).items():
            tensors[f"gain.{k}"] = torch.tensor([v], dtype=torch.float64)
        # End to end in float64 on the same inputs, memory carried in float64: `out.X` vs
        # `e2e64.X` is the float32 reference's own end-to-end rounding error (backbone rounding
        # amplified by the heads, and the memory's accumulated drift on frame 1).
        out64 = forward_frame_float64(m64, dev_inputs, state64)
        for k in E2E_OUTPUTS:
            v = out64[k] if "." not in k else out64[k.split(".")[0]][k.split(".")[1]]
            tensors[f"e2e64.{k}"] = v.detach().cpu().contiguous()
        state64 = out64["state"]
        for k in E2E_STATE:
            tensors[f"e2e64.state_out.{k}"] = getattr(state64, k).detach().cpu().contiguous()
        del out64
        # The reference's own half-precision drift on the first frame (half backbone + float32
        # heads, and everything in half): what the half-precision parity tests are scaled by.
        if i == 0:
            for mode in HALF_MODES:
                for k, v in forward_half(vision, dev_inputs, state, mode).items():
                    tensors[f"half.{mode}.{k}"] = v.detach().cpu().contiguous()
        for f in STATE_FIELDS:
            tensors[f"state_out.{f}"] = getattr(new_state, f).detach().cpu().contiguous()
        state = new_state

        # LLM side.
        prompt_ids = planning_prompt_ids(tok, loc)
        embeds = L.splice_embeddings(llm, prompt_ids, out["vision_tokens"])
        answer = format_answer(FIXED_ANSWER_POINTS)
        answer_ids = tok.encode(answer) + [tok.eos_id]
        logits = L.teacher_forced_logits(llm, embeds, answer_ids)[0]
        P = embeds.shape[1]
        first_row = 0 if logits.numel() <= MAX_FULL_LOGITS else P - 1
        gen = L.generate(llm, embeds, max_new_tokens=max_new_tokens)
        tensors.update({
            "llm.prompt_ids": torch.tensor(prompt_ids, dtype=torch.int64),
            "llm.image_token_pos": torch.tensor([prompt_ids.index(-200)], dtype=torch.int64),
            "llm.inputs_embeds": embeds.detach().cpu().contiguous(),
            "llm.answer_ids": torch.tensor(answer_ids, dtype=torch.int64),
            "llm.tf_logits": logits[first_row:].detach().cpu().contiguous(),
            "llm.tf_logits_first_row": torch.tensor([first_row], dtype=torch.int64),
            "llm.greedy_ids": torch.tensor(gen.ids, dtype=torch.int64),
            "llm.greedy_first_logits": gen.first_logits.contiguous(),
        })
        meta = {"location": loc, "prompt": planning_prompt(loc), "answer": answer,
                "greedy_text": tok.decode(gen.ids), "timestamp": str(t), "seed": str(seed),
                "command": str(cmd), "max_new_tokens": str(max_new_tokens)}
        frames.append((tensors, meta))
    return frames


def write_fixtures(ckpt: str, out_dir: str, device: str, max_new_tokens: int, taps: bool) -> list:
    vision, llm, tok = C.load_checkpoint(ckpt, device)
    frames = run_frames(vision, llm, tok, device, max_new_tokens, taps)
    os.makedirs(out_dir, exist_ok=True)
    manifest = {"checkpoint": os.path.relpath(ckpt, out_dir), "frames": []}
    paths = []
    for i, (tensors, meta) in enumerate(frames):
        name = f"frame{i}.safetensors"
        save_file(C.unshare(tensors), os.path.join(out_dir, name), metadata=meta)
        manifest["frames"].append(dict(meta, file=name))
        paths.append(os.path.join(out_dir, name))
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    return paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="full-size random checkpoint")
    ap.add_argument("--ckpt", help="use this checkpoint folder instead of making a random one")
    ap.add_argument("--out", help="fixture folder (default tests/data/fixtures for tiny)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--taps", choices=["on", "off"], default=None,
                    help="store per-block ViT outputs (default: on for tiny, off for full)")
    args = ap.parse_args(argv)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False

    if args.ckpt:
        ckpt = args.ckpt
        if not args.out:
            ap.error("--ckpt needs --out")
        out = args.out
    elif args.full:
        if not args.out:
            ap.error("--full needs --out (full fixtures are not committed)")
        out = args.out
        ckpt = os.path.join(out, "ckpt")
        # LLM stored in float16 (as a real TinyLlama checkpoint); the reference computes in
        # float32 on the float16-rounded weights it reads back.
        if omnidrive_export.main(["--random", "full", "--seed", str(args.seed), "--out", ckpt]):
            return 1
    else:
        out = args.out or TINY_FIXTURES
        ckpt = TINY_CKPT if not args.out else os.path.join(out, "ckpt")
        if omnidrive_export.main(["--random", "tiny", "--seed", str(args.seed), "--out", ckpt]):
            return 1
    taps = (args.taps == "on") if args.taps else not args.full
    paths = write_fixtures(ckpt, out, args.device, args.max_new_tokens, taps)
    total = sum(os.path.getsize(p) for p in paths)
    print(f"wrote {len(paths)} frames to {out} ({total / 1e6:.2f} MB) from checkpoint {ckpt}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
