"""TinyLlama (LLaMA-2 architecture) planner: configs, construction, the LLaVA splice, teacher
forcing and decoding. Spec: omnidrive_model.md §4.2, §4.4, §7.

The model itself is transformers' LlamaForCausalLM in float32 with eager attention, which is the
reference the C++ llama blocks are checked against. Only the glue (splice, loop, sampler) lives
here, written out so that the C++ port can follow it line by line.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch

from .prompt import IMAGE_TOKEN_INDEX
from .tokenizer import BOS_ID, EOS_ID, PAD_ID

NUM_VISION_TOKENS = 513  # 256 box + 1 ego/can-bus + 256 lane (spec §3.9)


@dataclass
class LlmConfig:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False
    bos_token_id: int = BOS_ID
    eos_token_id: int = EOS_ID
    pad_token_id: int = PAD_ID

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @staticmethod
    def full() -> "LlmConfig":
        """TinyLlama-1.1B-Chat-v1.0 (spec §7)."""
        return LlmConfig(vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_layers=22,
                         num_heads=32, num_kv_heads=4)

    @staticmethod
    def tiny(vocab_size: int = 512) -> "LlmConfig":
        """Same architecture, test size: GQA 2/1, odd-ish MLP width. head_dim 32, the smallest
        the CUDA engine's attention kernels take, so that the CUDA tests run on it too."""
        return LlmConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=160,
                         num_layers=2, num_heads=2, num_kv_heads=1)

    def validate(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(f"llm config: hidden_size {self.hidden_size} not divisible by "
                             f"num_heads {self.num_heads}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"llm config: num_heads {self.num_heads} not divisible by "
                             f"num_kv_heads {self.num_kv_heads}")
        if self.head_dim % 2:
            raise ValueError(f"llm config: head_dim {self.head_dim} must be even for RoPE")

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["head_dim"] = self.head_dim
        d["architecture"] = "llama"
        d["hidden_act"] = "silu"
        d["rope_convention"] = "half_split"  # HF rotate_half: pairs (i, i + head_dim/2)
        return d

    @staticmethod
    def from_json(d: dict) -> "LlmConfig":
        names = {f.name for f in dataclasses.fields(LlmConfig)}
        missing = [n for n in ("vocab_size", "hidden_size", "intermediate_size", "num_layers",
                               "num_heads", "num_kv_heads") if n not in d]
        if missing:
            raise ValueError(f"llm config: missing fields {missing}")
        cfg = LlmConfig(**{k: v for k, v in d.items() if k in names})
        if "head_dim" in d and d["head_dim"] != cfg.head_dim:
            raise ValueError(f"llm config: head_dim {d['head_dim']} != hidden/heads {cfg.head_dim}")
        cfg.validate()
        return cfg

    @staticmethod
    def from_hf(d: dict) -> "LlmConfig":
        """From a Hugging Face LLaMA config.json dict."""
        theta = d.get("rope_theta")
        if theta is None:
            theta = (d.get("rope_parameters") or {}).get("rope_theta", 10000.0)
        scaling = d.get("rope_scaling")
        if scaling:
            raise ValueError(f"HF config: rope_scaling {scaling} is not supported (TinyLlama has "
                             f"none)")
        if d.get("attention_bias") or d.get("mlp_bias"):
            raise ValueError("HF config: attention/mlp biases are not supported")
        act = d.get("hidden_act", "silu")
        if act != "silu":
            raise ValueError(f"HF config: hidden_act {act!r} is not supported (silu)")
        cfg = LlmConfig(
            vocab_size=d["vocab_size"], hidden_size=d["hidden_size"],
            intermediate_size=d["intermediate_size"], num_layers=d["num_hidden_layers"],
            num_heads=d["num_attention_heads"],
            num_kv_heads=d.get("num_key_value_heads") or d["num_attention_heads"],
            rms_norm_eps=d.get("rms_norm_eps", 1e-6), rope_theta=float(theta),
            max_position_embeddings=d.get("max_position_embeddings", 2048),
            tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),
            bos_token_id=d.get("bos_token_id", BOS_ID), eos_token_id=d.get("eos_token_id", EOS_ID),
            pad_token_id=PAD_ID)
        if cfg.tie_word_embeddings:
            raise ValueError("HF config: tied embeddings are not supported (TinyLlama is untied)")
        cfg.validate()
        return cfg

    def to_hf(self):
        from transformers import LlamaConfig
        self.validate()
        return LlamaConfig(
            vocab_size=self.vocab_size, hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size, num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads, num_key_value_heads=self.num_kv_heads,
            hidden_act="silu", max_position_embeddings=self.max_position_embeddings,
            rms_norm_eps=self.rms_norm_eps, rope_theta=self.rope_theta,
            tie_word_embeddings=self.tie_word_embeddings, attention_bias=False, mlp_bias=False,
            bos_token_id=self.bos_token_id, eos_token_id=self.eos_token_id,
            pad_token_id=self.pad_token_id)


def build_llm(cfg: LlmConfig):
    """LlamaForCausalLM in float32, eager attention, eval mode (weights: transformers' init)."""
    from transformers import LlamaForCausalLM
    hf = cfg.to_hf()
    hf._attn_implementation = "eager"
    model = LlamaForCausalLM(hf)
    model.config._attn_implementation = "eager"
    return model.float().eval()


@torch.no_grad()
def init_llm_random(model, seed: int) -> None:
    """Seeded random weights at a realistic scale, made discriminative for parity tests.

    Linear weights ~ N(0, 1/fan_in) (≈0.022 for hidden 2048, the scale of real TinyLlama weights);
    residual-branch outputs (o_proj, down_proj) scaled by 1/sqrt(2·layers) so the residual stream
    stays O(1); q/k projections ×2 so attention is not near-uniform (positions and RoPE then
    matter); RMSNorm weights 1 + N(0, 0.1) so a port that ignores them fails; embeddings and
    lm_head N(0, 1) and N(0, 1/hidden) (logits of order 1).
    """
    g = torch.Generator().manual_seed(int(seed))
    n_layers = model.config.num_hidden_layers
    for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        if name.endswith("norm.weight") or "layernorm" in name:
            p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
        elif name == "model.embed_tokens.weight":
            p.copy_(torch.randn(p.shape, generator=g))
        else:
            fan_in = p.shape[1]
            std = 1.0 / math.sqrt(fan_in)
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                std /= math.sqrt(2 * n_layers)
            if name.endswith(("q_proj.weight", "k_proj.weight")):
                std *= 2.0
            p.copy_(std * torch.randn(p.shape, generator=g))


def llm_config_of(model) -> LlmConfig:
    c = model.config
    return LlmConfig.from_hf(c.to_dict())


# ----------------------------------------------------------------------------------------------
# Splice (LLaVA prepare_inputs_labels_for_multimodal, one image)

def splice_embeddings(model, prompt_ids: Sequence[int], vision_tokens: torch.Tensor) -> torch.Tensor:
    """Embed the text ids and replace the single IMAGE_TOKEN_INDEX by the vision rows.

    prompt_ids: token ids with exactly one -200. vision_tokens: [N, H] or [1, N, H].
    Returns inputs_embeds [1, L - 1 + N, H] in the LLM's dtype (positions are 0..L+N-2).
    """
    ids = [int(i) for i in prompt_ids]
    n_img = ids.count(IMAGE_TOKEN_INDEX)
    if n_img != 1:
        raise ValueError(f"splice: prompt must hold exactly one image placeholder "
                         f"{IMAGE_TOKEN_INDEX}, found {n_img}")
    emb = model.get_input_embeddings()
    hidden = emb.weight.shape[1]
    vis = vision_tokens
    if vis.dim() == 3:
        if vis.shape[0] != 1:
            raise ValueError(f"splice: vision_tokens batch must be 1, got {list(vis.shape)}")
        vis = vis[0]
    if vis.dim() != 2 or vis.shape[1] != hidden:
        raise ValueError(f"splice: vision_tokens must be [N, {hidden}], got "
                         f"{list(vision_tokens.shape)}")
    bad = [i for i in ids if i != IMAGE_TOKEN_INDEX and not 0 <= i < emb.weight.shape[0]]
    if bad:
        raise ValueError(f"splice: token ids out of vocabulary [0, {emb.weight.shape[0]}): {bad[:5]}")
    k = ids.index(IMAGE_TOKEN_INDEX)
    dev, dt = emb.weight.device, emb.weight.dtype
    before = emb(torch.tensor(ids[:k], dtype=torch.long, device=dev))
    after = emb(torch.tensor(ids[k + 1:], dtype=torch.long, device=dev))
    return torch.cat([before, vis.to(device=dev, dtype=dt), after], dim=0).unsqueeze(0)


def _positions(start: int, n: int, device) -> torch.Tensor:
    return torch.arange(start, start + n, dtype=torch.long, device=device).unsqueeze(0)


@torch.no_grad()
def forward_embeds(model, inputs_embeds: torch.Tensor) -> torch.Tensor:
    """Full (uncached) forward; returns logits [1, L, V] in float32."""
    L = inputs_embeds.shape[1]
    out = model(inputs_embeds=inputs_embeds, position_ids=_positions(0, L, inputs_embeds.device),
                attention_mask=torch.ones(1, L, dtype=torch.long, device=inputs_embeds.device),
                use_cache=False)
    return out.logits.float()


@torch.no_grad()
def teacher_forced_logits(model, inputs_embeds: torch.Tensor,
                          answer_ids: Sequence[int]) -> torch.Tensor:
    """Logits [1, L + len(answer), V] for prompt embeddings followed by the answer tokens. Row
    L - 1 + i predicts answer token i."""
    emb = model.get_input_embeddings()
    ans = emb(torch.tensor([int(i) for i in answer_ids], dtype=torch.long,
                           device=emb.weight.device)).unsqueeze(0)
    return forward_embeds(model, torch.cat([inputs_embeds, ans.to(inputs_embeds.dtype)], dim=1))


@dataclass
class SamplingConfig:
    """HF `generate` sampling as OmniDrive's PyTorch path runs it (spec §4.4): temperature, then
    top-k (HF default 50), then top-p, then a multinomial draw from a seeded generator."""
    temperature: float = 0.1
    top_p: float = 0.75
    top_k: int = 50
    seed: int = 0
    method: str = "hf"  # "hf" (PyTorch reference) or "edgellm" (TRT-Edge-LLM's own sampler)


def warp_logits(logits: torch.Tensor, cfg: SamplingConfig) -> torch.Tensor:
    """HF's warpers in HF's order (TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper
    with min_tokens_to_keep=1) on logits [V]; removed entries become -inf."""
    if cfg.temperature <= 0:
        raise ValueError(f"sampling: temperature must be > 0, got {cfg.temperature}")
    x = logits.float().cpu() / cfg.temperature
    if cfg.top_k and cfg.top_k > 0:
        k = min(cfg.top_k, x.numel())
        kth = torch.topk(x, k).values[-1]
        x = x.masked_fill(x < kth, float("-inf"))
    if cfg.top_p < 1.0:
        # Drop the low-probability tail whose total mass is <= 1 - top_p (ascending sort), but
        # always keep the most likely token.
        sorted_logits, sorted_idx = torch.sort(x, descending=False)
        cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove_sorted = cum <= (1.0 - cfg.top_p)
        remove_sorted[-1] = False
        remove = torch.zeros_like(remove_sorted).scatter(0, sorted_idx, remove_sorted)
        x = x.masked_fill(remove, float("-inf"))
    return x


def sample_next(logits: torch.Tensor, cfg: SamplingConfig, gen: torch.Generator) -> int:
    """One token from logits [V]: warp, softmax, multinomial draw from the seeded generator."""
    if cfg.method == "edgellm":
        return sample_next_edgellm(logits, cfg, gen)
    if cfg.method != "hf":
        raise ValueError(f"sampling: unknown method {cfg.method!r} (hf, edgellm)")
    probs = warp_logits(logits, cfg).softmax(dim=-1)
    return int(torch.multinomial(probs, 1, generator=gen).item())


def sample_next_edgellm(logits: torch.Tensor, cfg: SamplingConfig, gen: torch.Generator) -> int:
    """TRT-Edge-LLM's sampler as spec §4.4 describes it (top_k 0): logits / temperature, sort
    descending, softmax, cumulative sum, r ~ U(0, 1) * top_p, the first sorted index whose cumsum
    >= r (inverse CDF restricted to the nucleus)."""
    if cfg.temperature <= 0:
        raise ValueError(f"sampling: temperature must be > 0, got {cfg.temperature}")
    x = logits.float().cpu() / cfg.temperature
    sorted_logits, sorted_idx = torch.sort(x, descending=True)
    cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    r = torch.rand((), generator=gen).item() * cfg.top_p
    pos = int(torch.searchsorted(cum, torch.tensor([r]), right=False).item())
    return int(sorted_idx[min(pos, x.numel() - 1)].item())


def _cache_kwarg(model) -> str:
    """transformers >= 5.2x names the KV cache argument `cache`; older releases
    `past_key_values`."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _cache_of(out):
    c = getattr(out, "cache", None)
    return c if c is not None else out.past_key_values


@dataclass
class GenerationResult:
    ids: List[int]                 # new tokens, including the EOS when one was produced
    first_logits: torch.Tensor     # [V] float32 logits after the prompt (the TTFT step)
    stopped_on_eos: bool


@torch.no_grad()
def generate(model, inputs_embeds: torch.Tensor, max_new_tokens: int = 320,
             eos_id: int = EOS_ID, sampling: Optional[SamplingConfig] = None) -> GenerationResult:
    """Decode with a KV cache: one prefill over the spliced embeddings, then one step per token.
    Greedy (argmax, lowest id on ties as torch.argmax) when `sampling` is None."""
    if max_new_tokens < 1:
        raise ValueError(f"generate: max_new_tokens must be >= 1, got {max_new_tokens}")
    dev = inputs_embeds.device
    L = inputs_embeds.shape[1]
    limit = model.config.max_position_embeddings
    if L + max_new_tokens > limit:
        raise ValueError(f"generate: prompt {L} + max_new_tokens {max_new_tokens} exceeds the "
                         f"context {limit}")
    gen = torch.Generator().manual_seed(sampling.seed) if sampling is not None else None
    out = model(inputs_embeds=inputs_embeds, position_ids=_positions(0, L, dev),
                attention_mask=torch.ones(1, L, dtype=torch.long, device=dev), use_cache=True)
    cache = _cache_of(out)
    logits = out.logits[0, -1].float()
    first_logits = logits.detach().cpu().clone()
    ids: List[int] = []
    for step in range(max_new_tokens):
        tok = int(torch.argmax(logits).item()) if gen is None else sample_next(logits, sampling, gen)
        ids.append(tok)
        if tok == eos_id or step == max_new_tokens - 1:
            break
        pos = L + step
        out = model(input_ids=torch.tensor([[tok]], dtype=torch.long, device=dev),
                    position_ids=_positions(pos, 1, dev),
                    attention_mask=torch.ones(1, pos + 1, dtype=torch.long, device=dev),
                    use_cache=True, **{_cache_kwarg(model): cache})
        cache = _cache_of(out)
        logits = out.logits[0, -1].float()
    return GenerationResult(ids=ids, first_logits=first_logits,
                            stopped_on_eos=bool(ids) and ids[-1] == eos_id)


@torch.no_grad()
def generate_greedy_uncached(model, inputs_embeds: torch.Tensor, max_new_tokens: int,
                             eos_id: int = EOS_ID) -> List[int]:
    """Greedy decoding by recomputing the whole sequence each step (slow; a check of the cache)."""
    emb = model.get_input_embeddings()
    seq = inputs_embeds
    ids: List[int] = []
    for _ in range(max_new_tokens):
        tok = int(torch.argmax(forward_embeds(model, seq)[0, -1]).item())
        ids.append(tok)
        if tok == eos_id:
            break
        seq = torch.cat([seq, emb.weight[tok].view(1, 1, -1).to(seq.dtype)], dim=1)
    return ids
