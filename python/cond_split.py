#!/usr/bin/env python3
"""Where does the reference's own f32 error come from? f32 heads with (i) attention core
(q k^T, softmax, @V) done in f64, (ii) all F.linear in f64, vs the full f64 heads.
  PYTHONPATH=python nice python3 python/cond_split.py --size full"""
import argparse, copy, os, sys, torch
import torch.nn.functional as F
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cond_heads as C
from omnidrive_ref import OmniDriveConfig, OmniDriveVision, init_random
from omnidrive_ref.synthetic import make_frame
from omnidrive_ref import layers as L
ap = argparse.ArgumentParser(); ap.add_argument("--size", default="full"); a = ap.parse_args()
torch.set_num_threads(2)
cfg = OmniDriveConfig.full() if a.size == "full" else OmniDriveConfig.tiny()
C.model_cfg = cfg
m = OmniDriveVision(cfg).eval(); init_random(m, 0)
inp = make_frame(cfg, 0.0, 101, is_first_frame=True, command=2)
inp["img2lidars"] = torch.inverse(inp["lidar2img"])
p = m._prepare_inputs(inp); st = m.initial_state().as_dict()
feats = torch.load(f"/tmp/cond_feats_{a.size}_new.pt")  # made by cond_heads.py --feats real
orig_att = C._orig_attention
with torch.no_grad():
    o64 = C.run64(copy.deepcopy(m).double(), feats, p, st)
    L.attention = lambda q, k, v, b=None: orig_att(q.double(), k.double(), v.double(), b).float()
    oa = C.heads(m, feats, p, st)
    L.attention = C._rec_attention
    lin = F.linear
    F.linear = lambda x, w, b=None: lin(x.double(), w.double(), None if b is None else b.double()).float()
    ol = C.heads(m, feats, p, st)
    F.linear = lin
C.report("f32 with attention core in f64 vs f64", oa, o64)
C.report("f32 with all F.linear in f64 vs f64", ol, o64)
