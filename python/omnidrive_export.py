#!/usr/bin/env python3
"""Make an omnirt checkpoint folder (config.json + vision.safetensors + llm.safetensors +
tokenizer.model; layout in omnidrive_ref/checkpoint.py).

Sources:
  --pth FILE          an OmniDrive checkpoint (torch state dict, possibly under "state_dict"):
                      vision weights keep their original names; the planner (`lm_head.*`, fully
                      fine-tuned) becomes the LLM part under Hugging Face names.
  --hf-llama DIR      a Hugging Face LLaMA folder (config.json + *.safetensors or
                      pytorch_model*.bin + tokenizer.model): LLM config and tokenizer, and the LLM
                      weights unless --pth holds them (the .pth overlays, as OmniDrive's
                      deploy/save_llm_checkpoint.py does).
  --random {tiny,full} --seed N
                      random vision (the vision reference's init_random) and random LLM (seeded,
                      realistic scale); with --hf-llama the LLM part comes from DIR instead.

Examples:
  python/omnidrive_export.py --pth omnidrive.pth --hf-llama TinyLlama-1.1B-Chat-v1.0 --out ckpt
  python/omnidrive_export.py --random tiny --seed 0 --out tests/data/tiny_ckpt
  python/omnidrive_export.py --random full --seed 0 --tokenizer tokenizer.model --out full_ckpt
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from omnidrive_ref import checkpoint as C  # noqa: E402
from omnidrive_ref import llm as L  # noqa: E402
from omnidrive_ref.tokenizer import TEST_TOKENIZER_PATH, Tokenizer  # noqa: E402

DTYPES = {"keep": None, "float32": torch.float32, "float16": torch.float16,
          "bfloat16": torch.bfloat16}


def export(args) -> str:
    V = C.vision_api()
    source = {}
    hf = None
    if args.hf_llama:
        hf = C.read_hf_llama(args.hf_llama)
        source["hf_llama"] = os.path.abspath(args.hf_llama)

    if args.pth:
        size = args.vision_config or "full"
        vcfg = V.config_by_name(size)
        sd = C.read_torch_state_dict(args.pth, trust_pickle=getattr(args, "trust_pickle", False))
        vision_sd, llm_sd = C.split_omnidrive_state_dict(sd)
        C.check_state_dict(vision_sd, V.build_vision(vcfg).state_dict(),
                           f"{args.pth}: vision weights vs the {size} config")
        if hf is not None:
            llm_cfg, hf_sd, tok_path = hf
            if not llm_sd:
                llm_sd = hf_sd
                source["llm_weights"] = "hf_llama"
            else:
                source["llm_weights"] = "pth"
        else:
            if not llm_sd:
                raise C.CheckpointError(f"{args.pth} holds no planner weights ({C.OMNIDRIVE_LLM_PREFIX}*); "
                                        f"pass --hf-llama DIR")
            llm_cfg = L.LlmConfig.full()
            tok_path = args.tokenizer
            if not tok_path:
                raise C.CheckpointError("--pth without --hf-llama needs --tokenizer tokenizer.model")
            source["llm_weights"] = "pth"
        source["pth"] = os.path.abspath(args.pth)
    elif args.random:
        vcfg = V.config_by_name(args.random)
        vision = V.build_vision(vcfg)
        V.init_vision_random(vision, args.seed)
        vision_sd = vision.state_dict()
        source.update(random=args.random, seed=args.seed)
        if hf is not None:
            llm_cfg, llm_sd, tok_path = hf
            source["llm_weights"] = "hf_llama"
        else:
            tok_path = args.tokenizer or TEST_TOKENIZER_PATH
            vocab = Tokenizer(tok_path).vocab_size
            llm_cfg = L.LlmConfig.tiny(vocab) if args.random == "tiny" else L.LlmConfig.full()
            llm = L.build_llm(llm_cfg)
            L.init_llm_random(llm, args.seed)
            llm_sd = llm.state_dict()
            source["llm_weights"] = "random"
    else:
        raise C.CheckpointError("give --pth FILE or --random {tiny,full}")

    if args.tokenizer:
        tok_path = args.tokenizer
    vjson = V.config_to_json(vcfg)
    if vjson["out_dims"] != llm_cfg.hidden_size:
        raise C.CheckpointError(f"vision out_dims {vjson['out_dims']} != LLM hidden_size "
                                f"{llm_cfg.hidden_size}: the vision tokens cannot be spliced")
    dtype = DTYPES[args.llm_dtype]
    if dtype is None and args.random and source.get("llm_weights") == "random":
        dtype = torch.float32 if args.random == "tiny" else torch.float16
    C.write_checkpoint(args.out, vjson, vision_sd, llm_cfg, llm_sd, tok_path,
                       source, llm_dtype=dtype)
    return args.out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pth", help="OmniDrive checkpoint (.pth)")
    ap.add_argument("--hf-llama", help="Hugging Face LLaMA folder")
    ap.add_argument("--random", choices=["tiny", "full"], help="random weights of this size")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vision-config", choices=["tiny", "full"],
                    help="vision size of a --pth checkpoint (default full)")
    ap.add_argument("--tokenizer", help="tokenizer.model to ship (overrides the source's)")
    ap.add_argument("--llm-dtype", choices=list(DTYPES), default="keep",
                    help="dtype of llm.safetensors (default: as the source; random tiny float32, "
                         "random full float16)")
    ap.add_argument("--trust-pickle", action="store_true",
                    help="read a .pth whose metadata holds arbitrary pickled objects (runs the "
                         "pickle: only for trusted files)")
    ap.add_argument("--out", required=True, help="output folder")
    args = ap.parse_args(argv)
    if args.pth and args.random:
        ap.error("--pth and --random are exclusive")
    try:
        out = export(args)
    except C.CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
