import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pytest  # noqa: E402
import torch  # noqa: E402

from omnidrive_ref import llm as L  # noqa: E402
from omnidrive_ref.prompt import (IMAGE_TOKEN_INDEX, location_from_log, planning_prompt,  # noqa: E402
                                  planning_prompt_ids, tokenizer_image_token)
from omnidrive_ref.tokenizer import load_test_tokenizer  # noqa: E402

SPEC_PROMPT_BOSTON = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives "
    "helpful, detailed, and polite answers to the user's questions. USER: <image>\nYou are driving "
    "in boston. Please provide the planning trajectory for the ego car without reasons. ASSISTANT:")


@pytest.fixture(scope="module")
def tok():
    return load_test_tokenizer()


@pytest.fixture(scope="module")
def model(tok):
    m = L.build_llm(L.LlmConfig.tiny(tok.vocab_size))
    L.init_llm_random(m, seed=3)
    return m


def test_prompt_text_is_the_spec_string():
    assert planning_prompt("boston") == SPEC_PROMPT_BOSTON
    assert planning_prompt("singapore-onenorth") == SPEC_PROMPT_BOSTON.replace("boston", "singapore")
    assert location_from_log("boston-seaport") == "boston"
    with pytest.raises(ValueError, match="expected one of"):
        location_from_log("paris")


@pytest.mark.parametrize("location", ["boston", "singapore"])
def test_prompt_ids_structure(tok, location):
    ids = planning_prompt_ids(tok, location)
    head, tail = planning_prompt(location).split("<image>")
    assert ids.count(1) == 1 and ids[0] == 1          # BOS once, first
    assert ids.count(IMAGE_TOKEN_INDEX) == 1           # one placeholder
    k = ids.index(IMAGE_TOKEN_INDEX)
    assert ids[1:k] == tok.encode(head)
    assert ids[k + 1:] == tok.encode(tail)
    assert len(ids) == 1 + len(tok.encode(head)) + 1 + len(tok.encode(tail))
    # As with LLaMA: "USER: " ends with a bare "▁" piece, the tail starts "▁", <0x0A>.
    sp = tok.sp
    assert ids[k - 1] == sp.PieceToId("▁")
    assert ids[k + 1:k + 3] == [sp.PieceToId("▁"), sp.PieceToId("<0x0A>")]
    assert tok.decode(ids[k + 1:]) == tail.lstrip(" ")


def test_tokenizer_image_token_edge_cases(tok):
    assert tokenizer_image_token("no image here", tok) == [1] + tok.encode("no image here")
    ids = tokenizer_image_token("a <image> b <image> c", tok)
    assert ids.count(IMAGE_TOKEN_INDEX) == 2 and ids.count(1) == 1
    assert tokenizer_image_token("<image>", tok) == [1, IMAGE_TOKEN_INDEX]


def test_full_config_matches_tinyllama():
    from transformers import LlamaForCausalLM
    cfg = L.LlmConfig.full()
    assert (cfg.num_layers, cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim,
            cfg.intermediate_size, cfg.vocab_size) == (22, 2048, 32, 4, 64, 5632, 32000)
    with torch.device("meta"):
        m = LlamaForCausalLM(cfg.to_hf())
    n = sum(p.numel() for p in m.parameters())
    assert n == 1_100_048_384  # TinyLlama-1.1B, untied lm_head
    assert L.LlmConfig.from_json(cfg.to_json()) == cfg
    assert L.LlmConfig.from_hf(cfg.to_hf().to_dict()) == cfg


def test_splice_puts_vision_rows_at_the_placeholder(tok, model):
    ids = planning_prompt_ids(tok, "singapore")
    k = ids.index(IMAGE_TOKEN_INDEX)
    vis = torch.randn(L.NUM_VISION_TOKENS, model.config.hidden_size, generator=torch.Generator().manual_seed(1))
    e = L.splice_embeddings(model, ids, vis)
    assert e.shape == (1, len(ids) - 1 + L.NUM_VISION_TOKENS, model.config.hidden_size)
    W = model.get_input_embeddings().weight
    torch.testing.assert_close(e[0, :k], W[ids[:k]], rtol=0, atol=0)
    torch.testing.assert_close(e[0, k:k + 513], vis, rtol=0, atol=0)
    torch.testing.assert_close(e[0, k + 513:], W[ids[k + 1:]], rtol=0, atol=0)
    torch.testing.assert_close(L.splice_embeddings(model, ids, vis[None]), e, rtol=0, atol=0)


def test_splice_rejects_bad_input(tok, model):
    ids = planning_prompt_ids(tok, "boston")
    vis = torch.randn(513, model.config.hidden_size)
    with pytest.raises(ValueError, match="exactly one image placeholder"):
        L.splice_embeddings(model, [i for i in ids if i != IMAGE_TOKEN_INDEX], vis)
    with pytest.raises(ValueError, match="exactly one image placeholder"):
        L.splice_embeddings(model, ids + [IMAGE_TOKEN_INDEX], vis)
    with pytest.raises(ValueError, match="must be \\[N, 64\\]"):
        L.splice_embeddings(model, ids, torch.randn(513, 65))
    with pytest.raises(ValueError, match="out of vocabulary"):
        L.splice_embeddings(model, ids + [tok.vocab_size], vis)


def _prompt_embeds(tok, model, seed=5):
    ids = planning_prompt_ids(tok, "boston")
    vis = torch.randn(513, model.config.hidden_size, generator=torch.Generator().manual_seed(seed))
    return L.splice_embeddings(model, ids, vis)


def test_greedy_generation_reproducible_and_matches_uncached(tok, model):
    e = _prompt_embeds(tok, model)
    a = L.generate(model, e, max_new_tokens=24)
    b = L.generate(model, e, max_new_tokens=24)
    assert a.ids == b.ids and len(a.ids) >= 1
    assert L.generate_greedy_uncached(model, e, 24) == a.ids
    # The first step's logits are the teacher-forced logits of the last prompt row, and feeding
    # the greedy answer back reproduces it token by token.
    tf = L.teacher_forced_logits(model, e, a.ids)
    P = e.shape[1]
    torch.testing.assert_close(tf[0, P - 1], a.first_logits, rtol=1e-5, atol=1e-5)
    assert torch.argmax(tf[0, P - 1:P - 1 + len(a.ids)], dim=-1).tolist() == a.ids
    # Another image gives another answer (the vision rows are really used).
    assert L.generate(model, _prompt_embeds(tok, model, seed=6), 24).ids != a.ids


def test_generation_stops_at_eos_and_limits(tok, model):
    e = _prompt_embeds(tok, model)
    first = L.generate(model, e, 1)
    assert len(first.ids) == 1
    # Make EOS the argmax of the first step by raising its lm_head row along the hidden state.
    m2 = L.build_llm(L.llm_config_of(model))
    m2.load_state_dict(model.state_dict())
    with torch.no_grad():
        m2.lm_head.weight[2] += 50.0 * m2.lm_head.weight[first.ids[0]]
    r = L.generate(m2, e, 10)
    assert r.ids == [2] and r.stopped_on_eos
    with pytest.raises(ValueError, match="exceeds the context"):
        L.generate(model, e, 4000)


def test_warpers_match_transformers():
    from transformers.generation.logits_process import (TemperatureLogitsWarper,
                                                        TopKLogitsWarper, TopPLogitsWarper)
    g = torch.Generator().manual_seed(11)
    for trial in range(20):
        logits = torch.randn(257, generator=g) * (1 + trial)
        cfg = L.SamplingConfig(temperature=[0.1, 0.7, 1.3][trial % 3], top_p=[0.75, 0.9, 0.3][trial % 3],
                               top_k=[50, 0, 5][trial % 3])
        ref = TemperatureLogitsWarper(cfg.temperature)(None, logits[None].clone())
        if cfg.top_k:
            ref = TopKLogitsWarper(cfg.top_k)(None, ref)
        ref = TopPLogitsWarper(cfg.top_p)(None, ref)[0]
        ours = L.warp_logits(logits, cfg)
        assert torch.equal(torch.isinf(ours), torch.isinf(ref))
        torch.testing.assert_close(ours[~torch.isinf(ours)], ref[~torch.isinf(ref)])


def test_sampling_seeded_and_distribution():
    logits = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0])
    cfg = L.SamplingConfig(temperature=1.0, top_p=1.0, top_k=0, seed=0)
    g = torch.Generator().manual_seed(0)
    n = 20000
    counts = torch.bincount(torch.tensor([L.sample_next(logits, cfg, g) for _ in range(n)]),
                            minlength=5).float() / n
    torch.testing.assert_close(counts, logits.softmax(-1), atol=0.015, rtol=0)
    # top_k = 1 and a tiny nucleus both reduce to argmax.
    for c in (L.SamplingConfig(temperature=1.0, top_p=1.0, top_k=1),
              L.SamplingConfig(temperature=1.0, top_p=0.01, top_k=0)):
        assert {L.sample_next(logits, c, g) for _ in range(50)} == {0}


def test_sampled_generation_is_seeded(tok, model):
    e = _prompt_embeds(tok, model)
    s = L.SamplingConfig(temperature=1.0, top_p=0.95, top_k=50, seed=4)
    a = L.generate(model, e, 16, sampling=s).ids
    assert L.generate(model, e, 16, sampling=s).ids == a
    assert L.generate(model, e, 16, sampling=L.SamplingConfig(1.0, 0.95, 50, seed=5)).ids != a


def test_edgellm_sampler_is_inverse_cdf_within_the_nucleus():
    logits = torch.log(torch.tensor([0.05, 0.5, 0.1, 0.3, 0.05]))
    cfg = L.SamplingConfig(temperature=1.0, top_p=0.75, seed=0, method="edgellm")
    g = torch.Generator().manual_seed(0)
    n = 20000
    counts = torch.bincount(torch.tensor([L.sample_next(logits, cfg, g) for _ in range(n)]),
                            minlength=5).float() / n
    # r ~ U(0, 0.75): sorted cumsum 0.5 (id 1), 0.8 (id 3) -> P(id 1) = 0.5/0.75, P(id 3) = 0.25/0.75.
    torch.testing.assert_close(counts, torch.tensor([0.0, 2 / 3, 0.0, 1 / 3, 0.0]), atol=0.015,
                               rtol=0)
    with pytest.raises(ValueError, match="unknown method"):
        L.sample_next(logits, L.SamplingConfig(method="beam"), g)
