#!/usr/bin/env python3
"""Export the vision part to ONNX with the reference deployment's I/O (spec §5.1).

    python/export_onnx.py --ckpt tests/data/tiny_ckpt --out vision.onnx [--check]

The graph = backbone + 3-D position embedding + both heads + both memory updates + VLM
projections, as OmniDrive's deploy/export_vision.py. Inputs (all float32):
  img, intrinsics (unused, kept as a graph input like the reference's), img2lidars, command,
  can_bus, is_first_frame, ego_pose, timestamp, ego_pose_inv, and the *_in memory tensors;
outputs: vision_embeded, all_cls_scores, all_bbox_preds, all_lane_cls_one2one,
  all_lane_preds_one2one, all_lane_cls_one2many, all_lane_preds_one2many, outs_dec_one2one,
  outs_dec_one2many and the *_out memory tensors (same shapes as *_in).

The memory timestamps travel as float32 between frames (the deploy runner's buffers are
float32); inside the graph they are widened to float64 as in the PyTorch reference. The
`timestamp` input should be scene-relative seconds (the runner subtracts the scene start).
`is_first_frame` acts as in the export: the keep flag x is multiplied by (1 - is_first_frame).
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import Dict, List

import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from omnidrive_ref import checkpoint as C  # noqa: E402
from omnidrive_ref.vision import VisionState  # noqa: E402

# Memory tensors in the order of the reference graph's inputs (spec §5.1).
MEMORY_NAMES = [
    "memory_embedding_bbox", "memory_reference_point_bbox", "memory_timestamp_bbox",
    "memory_egopose_bbox", "memory_canbus_bbox", "sample_time_bbox",
    "memory_timestamp_map", "sample_time_map", "memory_egopose_map", "memory_embedding_map",
    "memory_reference_point_map",
]
FRAME_INPUTS = ["img", "intrinsics", "img2lidars", "command", "can_bus", "is_first_frame",
                "ego_pose", "timestamp", "ego_pose_inv"]
INPUT_NAMES = FRAME_INPUTS + [f"{m}_in" for m in MEMORY_NAMES]
HEAD_OUTPUTS = ["vision_embeded", "all_cls_scores", "all_bbox_preds", "all_lane_cls_one2one",
                "all_lane_preds_one2one", "all_lane_cls_one2many", "all_lane_preds_one2many",
                "outs_dec_one2one", "outs_dec_one2many"]
OUTPUT_NAMES = HEAD_OUTPUTS + [f"{m}_out" for m in MEMORY_NAMES]
_TIME_FIELDS = ("memory_timestamp_bbox", "sample_time_bbox", "memory_timestamp_map",
                "sample_time_map")
# Added to sample_time on a first frame: |sample_time + T| >= 2 s then drops the whole memory,
# which is exactly the export's `x *= 1 - is_first_frame` for x in {0, 1}.
_FIRST_FRAME_TIME_OFFSET = 1.0e6


def input_shapes(cfg) -> Dict[str, List[int]]:
    n = cfg.num_cams
    mb, mm = cfg.topk + cfg.memory_len, cfg.lane_topk + cfg.lane_memory_len
    return {
        "img": [1, n, 3, cfg.img_h, cfg.img_w], "intrinsics": [1, n, 4, 4],
        "img2lidars": [1, n, 4, 4], "command": [1], "can_bus": [1, 13], "is_first_frame": [1],
        "ego_pose": [1, 4, 4], "timestamp": [1], "ego_pose_inv": [1, 4, 4],
        "memory_embedding_bbox_in": [1, mb, cfg.dec_dim],
        "memory_reference_point_bbox_in": [1, mb, 3],
        "memory_timestamp_bbox_in": [1, mb, 1], "memory_egopose_bbox_in": [1, mb, 4, 4],
        "memory_canbus_bbox_in": [1, cfg.can_bus_len + 1, 14], "sample_time_bbox_in": [1],
        "memory_timestamp_map_in": [1, mm, 1], "sample_time_map_in": [1],
        "memory_egopose_map_in": [1, mm, 4, 4], "memory_embedding_map_in": [1, mm, cfg.dec_dim],
        "memory_reference_point_map_in": [1, mm, cfg.n_control, 3],
    }


class VisionOnnxWrapper(nn.Module):
    """Explicit-state, tensor-only forward around OmniDriveVision.forward_frame."""

    def __init__(self, vision):
        super().__init__()
        self.vision = vision

    def forward(self, img, intrinsics, img2lidars, command, can_bus, is_first_frame, ego_pose,
                timestamp, ego_pose_inv, *memory_in):
        del intrinsics  # shape-only in the original; not used by the computation
        mem = dict(zip(MEMORY_NAMES, memory_in))
        first = is_first_frame.to(torch.float64).reshape(1)
        for k in _TIME_FIELDS:
            mem[k] = mem[k].to(torch.float64)
        mem["sample_time_bbox"] = mem["sample_time_bbox"] + first * _FIRST_FRAME_TIME_OFFSET
        mem["sample_time_map"] = mem["sample_time_map"] + first * _FIRST_FRAME_TIME_OFFSET
        state = VisionState(**mem)
        inputs = {"img": img, "lidar2img": img2lidars,  # lidar2img only shape-checked when
                  "img2lidars": img2lidars,             # img2lidars is given
                  "command": command, "can_bus": can_bus, "ego_pose": ego_pose,
                  "ego_pose_inv": ego_pose_inv, "timestamp": timestamp.to(torch.float64),
                  "is_first_frame": False}
        out = self.vision.forward_frame(inputs, state)
        new_state = out["state"]
        heads = [out["vision_tokens"]] + [out[k] for k in HEAD_OUTPUTS[1:]]
        mems = [getattr(new_state, k).to(torch.float32) for k in MEMORY_NAMES]
        return tuple(heads + mems)


def example_inputs(cfg, seed: int = 0) -> Dict[str, torch.Tensor]:
    """Random finite tensors of the right shapes (only used to trace)."""
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(*s, generator=g) for k, s in input_shapes(cfg).items()}


def export(vision, path: str, opset: int = 17) -> None:
    import onnx
    cfg = vision.cfg
    wrapper = VisionOnnxWrapper(vision).eval()
    ex = example_inputs(cfg)
    args = tuple(ex[k] for k in INPUT_NAMES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, args, path, input_names=INPUT_NAMES, output_names=OUTPUT_NAMES,
                          opset_version=opset, do_constant_folding=True, dynamo=False)
    # The tracer drops inputs the computation never reads (intrinsics); put it back so the graph
    # has the reference's input list (it stays unconnected, as A7 describes).
    model = onnx.load(path)
    present = [i.name for i in model.graph.input]
    shapes = input_shapes(cfg)
    new_inputs = []
    for name in INPUT_NAMES:
        if name in present:
            new_inputs.append(next(i for i in model.graph.input if i.name == name))
        else:
            new_inputs.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT,
                                                                 shapes[name]))
    del model.graph.input[:]
    model.graph.input.extend(new_inputs)
    onnx.checker.check_model(model)
    onnx.save(model, path)


def run_onnx(session, feeds: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    import numpy as np
    arrays = {k: np.ascontiguousarray(v.detach().cpu().numpy().astype(np.float32))
              for k, v in feeds.items()}
    outs = session.run(OUTPUT_NAMES, arrays)
    return {k: torch.from_numpy(v) for k, v in zip(OUTPUT_NAMES, outs)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True, help="omnirt checkpoint folder")
    ap.add_argument("--out", required=True, help="output .onnx file")
    ap.add_argument("--opset", type=int, default=17)
    args = ap.parse_args(argv)
    vision = C.load_vision(args.ckpt)
    export(vision, args.out, args.opset)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
