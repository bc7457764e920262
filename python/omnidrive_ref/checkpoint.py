"""The omnirt checkpoint folder: writing (from an OmniDrive .pth, a Hugging Face LLaMA folder or
random weights) and strict loading back into the PyTorch reference.

Folder layout (read by the C++ runtime's `omnirt import` output consumers too):

    config.json         {"format": "omnirt-checkpoint", "version": 1,
                         "vision": OmniDriveConfig.to_json(), "llm": LlmConfig.to_json(),
                         "tokenizer": {...}, "prompt": {...}, "generation": {...}, "source": {...}}
    vision.safetensors  vision weights under their ORIGINAL OmniDrive state-dict names (every
                        name of a shared tensor is present, each with its own copy)
    llm.safetensors     LLM weights under Hugging Face LlamaForCausalLM names
                        (model.embed_tokens.weight, model.layers.N.*, model.norm.weight,
                        lm_head.weight)
    tokenizer.model     SentencePiece model
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
from typing import Dict, Optional, Tuple

import torch
from safetensors.torch import load_file, save_file

from . import llm as L
from .tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizer

FORMAT_NAME = "omnirt-checkpoint"
FORMAT_VERSION = 1
VISION_FILE = "vision.safetensors"
LLM_FILE = "llm.safetensors"
TOKENIZER_FILE = "tokenizer.model"
CONFIG_FILE = "config.json"

# Where OmniDrive keeps the planner inside its state dict (Petr3D.lm_head = LlavaLlamaForCausalLM).
OMNIDRIVE_LLM_PREFIX = "lm_head."
# Training-only buffers of LlavaLlamaForCausalLM / HF rotary caches that are not weights.
_LLM_IGNORED_SUFFIXES = ("weighted_mask", "rotary_emb.inv_freq")


class CheckpointError(ValueError):
    pass


# ----------------------------------------------------------------------------------------------
# Vision side: thin adapter over the vision reference (python/omnidrive_ref/config.py + model).

def vision_api():
    """(OmniDriveConfig, build_vision(cfg) -> nn.Module, init_vision_random(model, seed))."""
    from . import vision_api as V
    return V


# ----------------------------------------------------------------------------------------------
# State-dict helpers

def read_torch_state_dict(path: str, trust_pickle: bool = False) -> Dict[str, torch.Tensor]:
    """A .pth / .bin state dict, possibly nested under "state_dict" / "model" (mmcv's
    save_checkpoint) and possibly with a DataParallel "module." prefix.

    Read with torch.load(weights_only=True), which refuses arbitrary pickled objects; an mmcv
    checkpoint whose "meta" holds other objects needs trust_pickle=True (only for files you
    trust: unpickling can run code)."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except Exception as e:  # noqa: BLE001 - report which file and why
        hint = "" if trust_pickle else " (if the file is trusted, retry with --trust-pickle)"
        raise CheckpointError(f"{path}: cannot read as a torch state dict ({e}){hint}") from e
    for key in ("state_dict", "model", "module"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{path}: no state dict found (top-level type {type(obj).__name__})")
    sd = {}
    for k, v in obj.items():
        if not isinstance(v, torch.Tensor):
            continue  # e.g. mmcv "meta" strings never sit in state_dict, but be tolerant
        if k.startswith("module."):
            k = k[len("module."):]
        sd[k] = v
    return sd


def unshare(sd: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Contiguous CPU tensors, each owning its storage (safetensors refuses shared storage: the
    original checkpoint stores e.g. cls_branches.0-5 as one module under six names)."""
    seen = set()
    out = {}
    for k in sorted(sd):
        t = sd[k].detach().cpu().contiguous()
        if t.numel():
            ptr = t.untyped_storage().data_ptr()
            whole = t.untyped_storage().nbytes() == t.numel() * t.element_size()
            if ptr in seen or not whole:
                t = t.clone()
            seen.add(t.untyped_storage().data_ptr())
        out[k] = t
    return out


def check_state_dict(sd: Dict[str, torch.Tensor], expected: Dict[str, torch.Tensor], what: str,
                     ignore_suffixes=()) -> None:
    """Same names and shapes as `expected`, or one error listing every difference."""
    names = {k for k in sd if not k.endswith(tuple(ignore_suffixes))}
    exp = set(expected)
    problems = []
    missing = sorted(exp - names)
    unexpected = sorted(names - exp)
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {missing[:5]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:5]})")
    bad = [f"{k}: {list(sd[k].shape)} vs expected {list(expected[k].shape)}"
           for k in sorted(names & exp) if tuple(sd[k].shape) != tuple(expected[k].shape)]
    if bad:
        problems.append(f"{len(bad)} shape mismatches (e.g. {bad[:5]})")
    if problems:
        raise CheckpointError(f"{what}: " + "; ".join(problems))


def split_omnidrive_state_dict(sd: Dict[str, torch.Tensor]):
    """-> (vision part with original names, LLM part with HF names or {} when absent)."""
    vision, llm = {}, {}
    for k, v in sd.items():
        if k.startswith(OMNIDRIVE_LLM_PREFIX):
            name = k[len(OMNIDRIVE_LLM_PREFIX):]
            if not name.endswith(_LLM_IGNORED_SUFFIXES):
                llm[name] = v
        else:
            vision[k] = v
    return vision, llm


# ----------------------------------------------------------------------------------------------
# Hugging Face LLaMA folder

def read_hf_llama(folder: str):
    """-> (LlmConfig, state dict with HF names, tokenizer.model path)."""
    cfg_path = os.path.join(folder, "config.json")
    if not os.path.isfile(cfg_path):
        raise CheckpointError(f"{folder}: no config.json (not a Hugging Face model folder)")
    with open(cfg_path) as f:
        hf = json.load(f)
    mt = hf.get("model_type", "llama")
    if mt not in ("llama", "llava_llama"):
        raise CheckpointError(f"{cfg_path}: model_type {mt!r} is not a LLaMA model")
    cfg = L.LlmConfig.from_hf(hf)
    files = sorted(glob.glob(os.path.join(folder, "*.safetensors")))
    sd: Dict[str, torch.Tensor] = {}
    if files:
        for p in files:
            sd.update(load_file(p))
    else:
        files = sorted(glob.glob(os.path.join(folder, "pytorch_model*.bin")))
        if not files:
            raise CheckpointError(f"{folder}: no *.safetensors or pytorch_model*.bin weights")
        for p in files:
            sd.update(read_torch_state_dict(p))
    sd = {k: v for k, v in sd.items() if not k.endswith(_LLM_IGNORED_SUFFIXES)}
    tok = os.path.join(folder, TOKENIZER_FILE)
    if not os.path.isfile(tok):
        raise CheckpointError(f"{folder}: no {TOKENIZER_FILE}")
    return cfg, sd, tok


def expected_llm_state(cfg: L.LlmConfig) -> Dict[str, torch.Tensor]:
    from transformers import LlamaForCausalLM
    with torch.device("meta"):
        m = LlamaForCausalLM(cfg.to_hf())
    return dict(m.state_dict())


# ----------------------------------------------------------------------------------------------
# Writing and loading

def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def write_checkpoint(out_dir: str, vision_cfg_json: dict, vision_sd: Dict[str, torch.Tensor],
                     llm_cfg: L.LlmConfig, llm_sd: Dict[str, torch.Tensor], tokenizer_path: str,
                     source: dict, llm_dtype: Optional[torch.dtype] = None) -> None:
    """Validate nothing about the vision names here (callers do); write the four files."""
    tok = Tokenizer(tokenizer_path)
    if tok.vocab_size > llm_cfg.vocab_size:
        raise CheckpointError(f"tokenizer {tokenizer_path} has {tok.vocab_size} pieces but the "
                              f"LLM vocabulary is {llm_cfg.vocab_size}")
    check_state_dict(llm_sd, expected_llm_state(llm_cfg), "LLM weights")
    os.makedirs(out_dir, exist_ok=True)
    vision = unshare({k: v.float() if v.is_floating_point() else v for k, v in vision_sd.items()})
    llm = unshare({k: (v.to(llm_dtype) if llm_dtype is not None else v) for k, v in llm_sd.items()})
    save_file(vision, os.path.join(out_dir, VISION_FILE), metadata={"omnirt": "vision"})
    save_file(llm, os.path.join(out_dir, LLM_FILE), metadata={"omnirt": "llm"})
    tok_dst = os.path.join(out_dir, TOKENIZER_FILE)
    if os.path.abspath(tokenizer_path) != os.path.abspath(tok_dst):
        shutil.copyfile(tokenizer_path, tok_dst)
    llm_dtypes = sorted({str(v.dtype).replace("torch.", "") for v in llm.values()})
    config = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "vision": vision_cfg_json,
        "llm": dict(llm_cfg.to_json(), weights=LLM_FILE, dtype=llm_dtypes[0] if len(llm_dtypes) == 1
                    else llm_dtypes),
        "vision_weights": VISION_FILE,
        "tokenizer": {"file": TOKENIZER_FILE, "type": "sentencepiece", "vocab_size": tok.vocab_size,
                      "unk_id": UNK_ID, "bos_id": BOS_ID, "eos_id": EOS_ID, "pad_id": PAD_ID,
                      "sha256": _sha256(tok_dst)},
        "prompt": {"template": "vicuna_v1", "image_token": "<image>", "image_token_index": -200,
                   "num_vision_tokens": L.NUM_VISION_TOKENS},
        "generation": {"max_new_tokens": 320, "temperature": 0.1, "top_p": 0.75, "top_k": 50,
                       "eos_id": EOS_ID},
        "source": source,
    }
    with open(os.path.join(out_dir, CONFIG_FILE), "w") as f:
        json.dump(config, f, indent=2, sort_keys=False)
        f.write("\n")


def read_config(folder: str) -> dict:
    p = os.path.join(folder, CONFIG_FILE)
    if not os.path.isfile(p):
        raise CheckpointError(f"{folder}: no {CONFIG_FILE} (not an omnirt checkpoint folder)")
    with open(p) as f:
        cfg = json.load(f)
    if cfg.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{p}: format {cfg.get('format')!r}, expected {FORMAT_NAME!r}")
    if cfg.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"{p}: version {cfg.get('version')}, expected {FORMAT_VERSION}")
    return cfg


def load_llm(folder: str, device="cpu"):
    cfg = read_config(folder)
    llm_cfg = L.LlmConfig.from_json(cfg["llm"])
    sd = load_file(os.path.join(folder, cfg["llm"].get("weights", LLM_FILE)))
    check_state_dict(sd, expected_llm_state(llm_cfg), f"{folder}/{LLM_FILE}")
    model = L.build_llm(llm_cfg)
    model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    return model.to(device).eval()


def load_tokenizer(folder: str) -> Tokenizer:
    cfg = read_config(folder)
    tok = Tokenizer(os.path.join(folder, cfg["tokenizer"]["file"]))
    if tok.vocab_size != cfg["tokenizer"]["vocab_size"]:
        raise CheckpointError(f"{folder}: tokenizer has {tok.vocab_size} pieces, config.json says "
                              f"{cfg['tokenizer']['vocab_size']}")
    return tok


def load_vision(folder: str, device="cpu"):
    V = vision_api()
    cfg = read_config(folder)
    vcfg = V.config_from_json(cfg["vision"])
    model = V.build_vision(vcfg)
    sd = load_file(os.path.join(folder, cfg.get("vision_weights", VISION_FILE)))
    check_state_dict(sd, model.state_dict(), f"{folder}/{VISION_FILE}")
    model.load_state_dict(sd, strict=True)
    return model.to(device).eval()


def load_checkpoint(folder: str, device="cpu"):
    """-> (vision model, llm, tokenizer), all strictly loaded, float32, eval mode."""
    cfg = read_config(folder)
    if cfg["vision"].get("out_dims") != cfg["llm"].get("hidden_size"):
        raise CheckpointError(f"{folder}: vision out_dims {cfg['vision'].get('out_dims')} != llm "
                              f"hidden_size {cfg['llm'].get('hidden_size')}")
    return load_vision(folder, device), load_llm(folder, device), load_tokenizer(folder)
