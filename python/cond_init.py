#!/usr/bin/env python3
"""Conditioning of the reference heads under an init scheme (CPU; frame 0, make_fixtures' inputs).

  PYTHONPATH=python nice python3 python/cond_init.py --init new|old [--swap GROUP,...]
      [--feats /tmp/cond_feats_full.pt]

Runs the full-size heads in float32 and float64 on the same backbone features and prints the
reference's own f32-vs-f64 relative error per output and per decoder layer, the attention-logit
statistics of every attention call (what makes a softmax sharp) and the top-k score margins.
--init old = the scheme before the init fix (python/omnidrive_ref/init.py at 66ad3d5, read from
git); --swap copies tensor groups from the other scheme into this one, to find which tensors'
scale causes the growth. Groups: dec_attn (in_proj/out_proj), dec_ffn, dec_ln, pos_enc
(position_encoder), query_pos (query_pos, time_embedding, ego_pose_pe), in_proj (the heads'
input_projection), branches (cls/reg branches), embeds (nn.Embedding tables).
Features: the backbone output for this checkpoint's backbone (cached; made once, ~minutes).
"""
import argparse, copy, importlib.util, os, subprocess, sys, time
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import cond_heads as C  # noqa: E402
import omnidrive_ref  # noqa: E402
from omnidrive_ref import OmniDriveConfig, OmniDriveVision, init_random  # noqa: E402
from omnidrive_ref import layers as L  # noqa: E402
from omnidrive_ref.synthetic import make_frame  # noqa: E402

OLD_COMMIT = "66ad3d5"
GROUPS = {
    "dec_attn": lambda n: ".transformer." in n and (".attn." in n),
    "dec_ffn": lambda n: ".transformer." in n and "._layers." in n.split("transformer_layers")[-1],
    "dec_ln": lambda n: ".transformer." in n and any(f"transformer_layers.{i}." in n for i in (1, 3, 5)),
    "pos_enc": lambda n: n.startswith("position_encoder."),
    "query_pos": lambda n: any(s in n for s in ("query_pos.", "time_embedding.", "ego_pose_pe.")),
    "in_proj": lambda n: n.endswith("input_projection.weight") or n.endswith("input_projection.bias"),
    "branches": lambda n: "_branches." in n,
    "embeds": lambda n: any(s in n for s in ("query_embedding.", "embedding_lane.")),
}


def old_init():
    src = subprocess.run(["git", "-C", HERE, "show", f"{OLD_COMMIT}:python/omnidrive_ref/init.py"],
                         check=True, capture_output=True, text=True).stdout
    spec = importlib.util.spec_from_loader("omnidrive_ref._init_old", loader=None)
    mod = importlib.util.module_from_spec(spec)
    mod.__package__ = "omnidrive_ref"
    exec(compile(src, "init_old.py", "exec"), mod.__dict__)
    return mod.init_random


STATS = []


def rec_attention(q, k, v, blocked=None):
    out = C._orig_attention(q, k, v, blocked)
    if REC["on"]:
        mx_logit, maxp, gap = [], [], []
        kt = k.transpose(-2, -1)
        for s in range(0, q.shape[-2], 256):
            sc = q[..., s:s + 256, :] @ kt
            if blocked is not None:
                sc = sc.masked_fill(blocked[s:s + 256], float("-inf"))
            t2 = sc.topk(2, -1).values
            mx_logit.append(sc.masked_fill(torch.isinf(sc), 0).abs().amax().view(1))
            maxp.append(sc.softmax(-1).amax(-1).flatten())
            gap.append((t2[..., 0] - t2[..., 1]).flatten())
        STATS.append(("cross" if k.shape[-2] == REC["nk"] else "self", torch.cat(mx_logit).max(),
                      torch.cat(maxp).double(), torch.cat(gap).double()))
    return out


REC = {"on": False}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--init", default="new", choices=["new", "old"])
    ap.add_argument("--swap", default="", help="groups taken from the other scheme")
    ap.add_argument("--feats", default=None, help="backbone features cache (default per init)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = OmniDriveConfig.full()
    C.model_cfg = cfg
    inits = {"new": init_random, "old": old_init()}
    model = inits[args.init](OmniDriveVision(cfg).eval(), 0)
    if args.swap:
        other = inits["old" if args.init == "new" else "new"](OmniDriveVision(cfg).eval(), 0)
        sd, osd = model.state_dict(), other.state_dict()
        names = [n for n in sd if any(GROUPS[g](n) for g in args.swap.split(","))]
        with torch.no_grad():
            for n in names:
                sd[n].copy_(osd[n])
        print(f"swapped {len(names)} tensors from the other scheme: {args.swap}")
    inputs = make_frame(cfg, 0.0, 101, is_first_frame=True, command=2)
    inputs["img2lidars"] = torch.inverse(inputs["lidar2img"])
    p = model._prepare_inputs(inputs)
    st = model.initial_state().as_dict()
    cache = args.feats or f"/tmp/cond_feats_full_{args.init}.pt"
    if os.path.exists(cache):
        feats = torch.load(cache)
    else:
        t0 = time.time()
        with torch.no_grad():
            feats = model.img_backbone(p["img"].reshape(cfg.num_cams, 3, cfg.img_h, cfg.img_w), {}
                                       ).reshape(1, cfg.num_cams, cfg.embed_dim, cfg.grid_h, cfg.grid_w)
        torch.save(feats, cache)
        print(f"backbone {time.time() - t0:.0f}s -> {cache}")
    print(f"init={args.init} swap={args.swap or '-'} feats={cache} rms="
          f"{float(feats.double().pow(2).mean().sqrt()):.3f}")
    REC["nk"] = cfg.num_tokens
    L.attention = rec_attention
    with torch.no_grad():
        t0 = time.time()
        REC["on"] = True
        o32 = C.heads(model, feats, p, st)
        REC["on"] = False
        t1 = time.time()
        o64 = C.run64(copy.deepcopy(model).double(), feats, p, st)
        print(f"f32 {t1 - t0:.0f}s, f64 {time.time() - t1:.0f}s")
    C.report("reference f32 vs f64", o32, o64)
    nl = cfg.dec_layers
    for i, (kind, mx, maxp, gap) in enumerate(STATS):
        head = "box" if i < 2 * nl else "lane"
        print(f"  {head} L{(i % (2 * nl)) // 2} {kind:5s} max|logit| {float(mx):7.1f}  max-prob median "
              f"{maxp.median():.3f} p90 {maxp.quantile(0.9):.3f} frac>0.9 {(maxp > 0.9).double().mean():.3f}"
              f"  top1-top2 gap<1e-3 {(gap < 1e-3).double().mean():.4f}")
    for nm, key, k in (("box", "all_cls_scores", cfg.topk), ("lane", "all_lane_cls_one2one", cfg.lane_topk)):
        s = o64[key][-1, 0].sigmoid().max(-1).values.sort(descending=True).values
        d = (s[:-1] - s[1:])[:k + 1]
        cut = f"{float(s[k - 1] - s[k]):.2e}" if k < len(s) else "- (all taken)"
        print(f"  {nm} memory top-{k}: score std {s.std():.3f}, margin at the cut {cut},"
              f" min adjacent gap in top-{k} {float(d[:k - 1].min()):.2e}")
    s = o64["all_cls_scores"][-1, 0].sigmoid().flatten().sort(descending=True).values
    print(f"  boxes top-{cfg.max_boxes}: margin at the cut {float(s[cfg.max_boxes - 1] - s[cfg.max_boxes]):.2e}")


if __name__ == "__main__":
    main()
