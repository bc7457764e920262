#!/usr/bin/env python3
"""Float32 sensitivity of the reference heads (frame 0, empty memory, make_fixtures' frame-0 inputs).

  PYTHONPATH=python nice python3 python/cond_heads.py --size full --feats real|random
Compares (a) heads f32 vs heads f64 (model.double()), (b) f32 with feats perturbed by rel 6e-5
vs f32 unperturbed (and the same perturbation in f64 = exact-arithmetic conditioning).
"""
import argparse, copy, os, sys, time
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from omnidrive_ref import OmniDriveConfig, OmniDriveVision, init_random  # noqa
from omnidrive_ref import layers as Lmod  # noqa
from omnidrive_ref.synthetic import make_frame  # noqa

KEYS = ["vision_tokens", "box_tokens", "ego_token", "lane_tokens", "all_cls_scores",
        "all_bbox_preds", "all_lane_cls_one2one", "all_lane_preds_one2one", "box_outs_dec",
        "lane_outs_dec", "pos_embed"]

REC = {"on": False, "stats": []}
_orig_attention = Lmod.attention


def _rec_attention(q, k, v, blocked=None):
    out = _orig_attention(q, k, v, blocked)
    if REC["on"] and k.shape[-2] == REC["nk"]:  # cross-attention over image tokens
        mx = []
        for s in range(0, q.shape[-2], 256):
            pr = (q[..., s:s + 256, :] @ k.transpose(-2, -1)).softmax(-1)
            mx.append(pr.max(-1).values.flatten())
        REC["stats"].append(torch.cat(mx).double())
    return out


Lmod.attention = _rec_attention


def heads(model, feats, p, st):
    cfg = model.cfg
    tokens = feats.permute(0, 1, 3, 4, 2).reshape(1, cfg.num_tokens, cfg.embed_dim)
    pos_embed = model.position_encoder(model.position_embedding_input(p["img2lidars"]))
    box = model.pts_bbox_head(tokens, pos_embed, p, st, True)
    lane = model.map_head(tokens, pos_embed, p, st, True)
    box.pop("new_state"); lane.pop("new_state")
    out = {**box, **lane, "pos_embed": pos_embed}
    out["vision_tokens"] = torch.cat([box["box_tokens"], box["ego_token"], lane["lane_tokens"]], 1)
    return out


def run64(model64, feats, p, st):
    f_orig = torch.Tensor.float
    torch.set_default_dtype(torch.float64)
    torch.Tensor.float = lambda self, *a, **k: self.to(torch.float64)
    try:
        c = lambda t: t.double() if torch.is_tensor(t) and t.is_floating_point() else t
        o = heads(model64, feats.double(), {k: c(v) for k, v in p.items()},
                  {k: c(v) for k, v in st.items()})
    finally:
        torch.Tensor.float = f_orig
        torch.set_default_dtype(torch.float32)
    assert o["vision_tokens"].dtype == torch.float64
    return o


def rel(a, b):
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm())


def report(tag, a, b):
    parts = []
    for k in KEYS:
        parts.append(f"{k}={rel(a[k], b[k]):.2e}")
    print(f"[{tag}] " + " ".join(parts))
    pl = " ".join(f"{rel(a['all_cls_scores'][l], b['all_cls_scores'][l]):.1e}"
                  for l in range(a['all_cls_scores'].shape[0]))
    pd = " ".join(f"{rel(a['box_outs_dec'][l], b['box_outs_dec'][l]):.1e}"
                  for l in range(a['box_outs_dec'].shape[0]))
    pv = " ".join(f"{rel(a['lane_outs_dec'][l], b['lane_outs_dec'][l]):.1e}"
                  for l in range(a['lane_outs_dec'].shape[0]))
    print(f"   per-layer cls {pl} | box_dec {pd} | lane_dec {pv}")
    ta = a["all_cls_scores"][-1, 0].sigmoid().max(-1).values.topk(model_cfg.topk).indices
    tb = b["all_cls_scores"][-1, 0].sigmoid().max(-1).values.topk(model_cfg.topk).indices
    print(f"   box topk set overlap {len(set(ta.tolist()) & set(tb.tolist()))}/{model_cfg.topk}")


def main():
    global model_cfg
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="full", choices=["full", "tiny"])
    ap.add_argument("--feats", default="random", choices=["real", "random"])
    ap.add_argument("--noise", type=float, default=6e-5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = OmniDriveConfig.full() if args.size == "full" else OmniDriveConfig.tiny()
    model_cfg = cfg
    model = OmniDriveVision(cfg).eval()
    init_random(model, 0)  # == omnidrive_export --random <size> --seed 0 (init_vision_random)
    inputs = make_frame(cfg, 0.0, 101, is_first_frame=True, command=2)  # make_fixtures frame 0
    inputs["img2lidars"] = torch.inverse(inputs["lidar2img"])
    p = model._prepare_inputs(inputs)
    st = model.initial_state().as_dict()
    shape = (1, cfg.num_cams, cfg.embed_dim, cfg.grid_h, cfg.grid_w)
    cache = f"/tmp/cond_feats_{args.size}_new.pt"  # this init's backbone (cond_init.py: _old / _new)
    if args.feats == "real":
        if os.path.exists(cache):
            feats = torch.load(cache)
        else:
            t0 = time.time()
            with torch.no_grad():
                feats = model.img_backbone(p["img"].reshape(cfg.num_cams, 3, cfg.img_h, cfg.img_w),
                                           {}).reshape(shape)
            torch.save(feats, cache)
            print(f"backbone {time.time() - t0:.0f}s")
    else:
        g = torch.Generator().manual_seed(7)
        rms = 1.0
        if os.path.exists(cache):
            rms = float(torch.load(cache).double().pow(2).mean().sqrt())
        feats = torch.randn(shape, generator=g) * rms
    print(f"size={args.size} feats={args.feats} shape={tuple(feats.shape)} "
          f"rms={float(feats.double().pow(2).mean().sqrt()):.4f} absmax={float(feats.abs().max()):.3f}")
    g = torch.Generator().manual_seed(123)
    nz = torch.randn(shape, generator=g)
    featsp = feats + nz * (args.noise * feats.norm() / nz.norm())
    print(f"perturbation rel (f32) = {rel(featsp, feats):.2e}")
    model64 = copy.deepcopy(model).double()
    REC["nk"] = cfg.num_tokens
    with torch.no_grad():
        t0 = time.time()
        REC["on"] = True
        o32 = heads(model, feats, p, st)
        REC["on"] = False
        print(f"f32 heads {time.time() - t0:.0f}s")
        o32p = heads(model, featsp, p, st)
        o64 = run64(model64, feats, p, st)
        o64p = run64(model64, featsp, p, st)
    report("a: f32 vs f64", o32, o64)
    report("b: f32 pert vs f32", o32p, o32)
    report("b': f64 pert vs f64 (exact conditioning)", o64p, o64)
    s = REC["stats"]
    nl = cfg.dec_layers
    for name, i in (("box", nl - 1), ("lane", 2 * nl - 1), ("box L0", 0)):
        m = s[i]
        print(f"cross-attn max softmax prob, {name} (rows*heads={m.numel()}): mean {m.mean():.3f} "
              f"median {m.median():.3f} p90 {m.quantile(0.9):.3f} max {m.max():.3f} "
              f"frac>0.5 {(m > 0.5).double().mean():.3f}")
    for k in ("all_cls_scores", "vision_tokens"):
        print(f"{k}: f64 norm {o64[k].norm():.4e} absmax {o64[k].abs().max():.3e}")


if __name__ == "__main__":
    main()
