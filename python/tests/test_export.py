import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pytest  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

import make_fixtures  # noqa: E402
import omnidrive_export  # noqa: E402
from fixture_compare import assert_close_rel, compare_memory, rel_tol  # noqa: E402
from omnidrive_ref import checkpoint as C  # noqa: E402
from omnidrive_ref import llm as L  # noqa: E402
from omnidrive_ref import vision_api as V  # noqa: E402
from omnidrive_ref.tokenizer import TEST_TOKENIZER_PATH  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY_CKPT = os.path.join(REPO, "tests", "data", "tiny_ckpt")
FIXTURES = os.path.join(REPO, "tests", "data", "fixtures")


def _random_models(seed=0):
    vision = V.build_vision(V.config_by_name("tiny"))
    V.init_vision_random(vision, seed)
    from omnidrive_ref.tokenizer import load_test_tokenizer
    llm = L.build_llm(L.LlmConfig.tiny(load_test_tokenizer().vocab_size))
    L.init_llm_random(llm, seed)
    return vision, llm


def _assert_same_weights(a: dict, b: dict):
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k].float(), b[k].float()), k


@pytest.fixture(scope="module")
def models():
    return _random_models(0)


def test_random_export_round_trip_strict(tmp_path, models):
    out = str(tmp_path / "ck")
    assert omnidrive_export.main(["--random", "tiny", "--seed", "0", "--out", out]) == 0
    vision, llm, tok = C.load_checkpoint(out)
    _assert_same_weights(vision.state_dict(), models[0].state_dict())
    _assert_same_weights(llm.state_dict(), models[1].state_dict())
    cfg = json.load(open(os.path.join(out, "config.json")))
    assert cfg["format"] == "omnirt-checkpoint" and cfg["llm"]["num_kv_heads"] == 1
    assert cfg["vision"]["out_dims"] == cfg["llm"]["hidden_size"] == 64
    assert cfg["tokenizer"]["vocab_size"] == tok.vocab_size == 512
    # LLM weights under HF names, vision weights under the original names (all 301 of them).
    llm_keys = set(load_file(os.path.join(out, "llm.safetensors")))
    assert {"model.embed_tokens.weight", "lm_head.weight", "model.norm.weight",
            "model.layers.1.mlp.down_proj.weight"} <= llm_keys
    assert set(load_file(os.path.join(out, "vision.safetensors"))) == set(models[0].state_dict())


def test_committed_tiny_checkpoint_is_reproducible(models):
    vision, llm, _ = C.load_checkpoint(TINY_CKPT)
    _assert_same_weights(vision.state_dict(), models[0].state_dict())
    _assert_same_weights(llm.state_dict(), models[1].state_dict())


def test_strict_loading_reports_bad_tensors(tmp_path):
    out = tmp_path / "ck"
    shutil.copytree(TINY_CKPT, out)
    vpath = out / "vision.safetensors"
    sd = load_file(str(vpath))
    good = dict(sd)
    victim = sorted(sd)[5]
    del sd[victim]
    save_file(sd, str(vpath))
    with pytest.raises(C.CheckpointError, match="1 missing.*" + victim.replace(".", "\\.")):
        C.load_vision(str(out))
    sd = dict(good, extra_tensor=torch.zeros(3))
    save_file(sd, str(vpath))
    with pytest.raises(C.CheckpointError, match="unexpected.*extra_tensor"):
        C.load_vision(str(out))
    lpath = out / "llm.safetensors"
    lsd = load_file(str(lpath))
    lsd["model.norm.weight"] = torch.ones(65)
    save_file(lsd, str(lpath))
    with pytest.raises(C.CheckpointError, match="model.norm.weight: \\[65\\] vs expected \\[64\\]"):
        C.load_llm(str(out))
    cfg = json.load(open(out / "config.json"))
    cfg["version"] = 99
    json.dump(cfg, open(out / "config.json", "w"))
    with pytest.raises(C.CheckpointError, match="version 99"):
        C.read_config(str(out))


def _hf_folder(path, llm):
    os.makedirs(path, exist_ok=True)
    llm.save_pretrained(path)
    shutil.copyfile(TEST_TOKENIZER_PATH, os.path.join(path, "tokenizer.model"))
    return path


def test_pth_and_hf_llama_sources(tmp_path, models):
    vision, llm = models
    _, other_llm = _random_models(seed=9)
    hf = _hf_folder(str(tmp_path / "hf"), other_llm)
    # An OmniDrive-style .pth: mmcv nesting, the planner under lm_head.*, shared vision tensors
    # (cls/reg branches stored under several names), plus a training-only buffer.
    sd = dict(vision.state_dict())
    for k, v in llm.state_dict().items():
        sd["lm_head." + k] = v
    sd["lm_head.weighted_mask"] = torch.ones(7)
    pth = str(tmp_path / "omnidrive.pth")
    torch.save({"meta": {"epoch": 1}, "state_dict": sd}, pth)

    out = str(tmp_path / "a")
    assert omnidrive_export.main(["--pth", pth, "--vision-config", "tiny", "--hf-llama", hf,
                                  "--out", out]) == 0
    v2, l2, _ = C.load_checkpoint(out)
    _assert_same_weights(v2.state_dict(), vision.state_dict())
    _assert_same_weights(l2.state_dict(), llm.state_dict())  # the .pth overlays the HF weights

    # Without planner weights in the .pth, the LLM comes from the HF folder.
    pth2 = str(tmp_path / "vision_only.pth")
    torch.save({"state_dict": dict(vision.state_dict())}, pth2)
    out2 = str(tmp_path / "b")
    assert omnidrive_export.main(["--pth", pth2, "--vision-config", "tiny", "--hf-llama", hf,
                                  "--out", out2]) == 0
    _assert_same_weights(C.load_llm(out2).state_dict(), other_llm.state_dict())

    # Random vision + HF LLaMA given as pytorch_model.bin.
    hf_bin = str(tmp_path / "hf_bin")
    shutil.copytree(hf, hf_bin)
    for f in os.listdir(hf_bin):
        if f.endswith(".safetensors"):
            os.remove(os.path.join(hf_bin, f))
    torch.save(other_llm.state_dict(), os.path.join(hf_bin, "pytorch_model.bin"))
    out3 = str(tmp_path / "c")
    assert omnidrive_export.main(["--random", "tiny", "--hf-llama", hf_bin, "--out", out3]) == 0
    _assert_same_weights(C.load_llm(out3).state_dict(), other_llm.state_dict())

    # Errors name the problem.
    bad = dict(vision.state_dict())
    k = "pts_bbox_head.query_embedding.weight"
    bad[k] = torch.zeros(3, 3)
    torch.save(bad, str(tmp_path / "bad.pth"))
    with pytest.raises(C.CheckpointError, match="shape mismatches.*query_embedding"):
        omnidrive_export.export(omnidrive_export_args(pth=str(tmp_path / "bad.pth"), hf_llama=hf,
                                                      out=str(tmp_path / "d")))
    with pytest.raises(C.CheckpointError, match="no tokenizer.model"):
        os.remove(os.path.join(hf_bin, "tokenizer.model"))
        C.read_hf_llama(hf_bin)


def omnidrive_export_args(**kw):
    import argparse
    d = dict(pth=None, hf_llama=None, random=None, seed=0, vision_config="tiny", tokenizer=None,
             llm_dtype="keep", out=None)
    d.update(kw)
    return argparse.Namespace(**d)


def _canonical(name: str, t: torch.Tensor) -> torch.Tensor:
    if name.endswith("topk_indexes_bbox") or name.endswith("topk_indexes_map"):
        return t.sort(dim=-1).values
    return t


def test_committed_fixtures_match_the_reference(tmp_path):
    """Regenerating the fixtures from the committed checkpoint gives the committed tensors (so
    they are not stale after a change of the reference)."""
    try:
        _compare_regenerated_fixtures(tmp_path)
    except AssertionError as e:
        raise AssertionError(f"{e}\nThe committed fixtures differ from what the reference computes "
                             f"now; if the reference changed on purpose, regenerate them with "
                             f"`python3 python/make_fixtures.py` and commit tests/data.") from None


def _compare_regenerated_fixtures(tmp_path):
    out = str(tmp_path / "fx")
    paths = make_fixtures.write_fixtures(TINY_CKPT, out, "cpu", 32, taps=True)
    cfg = V.config_by_name("tiny")
    topk = {"bbox": cfg.topk, "map": cfg.lane_topk}
    for i, p in enumerate(paths):
        # Same code on another CPU: frame 0 agrees to float32 rounding; frame 1 goes through the
        # global-frame memory, which amplifies rounding differences (see fixture_compare).
        tol = 1e-5 if i == 0 else rel_tol(i)
        ref = load_file(os.path.join(FIXTURES, os.path.basename(p)))
        got = load_file(p)
        assert set(ref) == set(got)
        compare_memory(ref, got, topk, tol, "state_out.", "state_out.")
        for k in sorted(ref):
            if k.startswith("state_out.memory_") and any(g in k for g in ("embedding", "reference_point", "timestamp", "egopose")) and "canbus" not in k:
                continue  # compared above, up to the order of near-tied top-k rows
            if k.startswith("out.boxes."):
                continue  # compared below by producing query
            r, g = _canonical(k, ref[k]), _canonical(k, got[k])
            if k.startswith("half."):
                # The reference's own fp16/bf16 result: another CPU's half kernels may round
                # differently; what the C++ tests use is its drift from out.*, which must be
                # reproduced to within a quarter of itself.
                out = ref["out." + k.split(".", 2)[2]]
                drift = float((r.double() - out.double()).norm() / out.double().norm())
                again = float((g.double() - out.double()).norm() / out.double().norm())
                assert abs(again - drift) <= 0.25 * drift + 1e-6, f"{k}: drift {again:.3g} vs {drift:.3g}"
                continue
            if r.is_floating_point():
                assert_close_rel(k, r, g, tol)
            else:
                assert torch.equal(r, g), k
        order_r = ref["out.boxes.query"].argsort()
        order_g = got["out.boxes.query"].argsort()
        assert torch.equal(ref["out.boxes.query"][order_r], got["out.boxes.query"][order_g])
        assert torch.equal(ref["out.boxes.labels"][order_r], got["out.boxes.labels"][order_g])
        assert_close_rel("boxes.bboxes", ref["out.boxes.bboxes"][order_r],
                         got["out.boxes.bboxes"][order_g], tol)


def test_fixture_structure():
    f0 = load_file(os.path.join(FIXTURES, "frame0.safetensors"))
    f1 = load_file(os.path.join(FIXTURES, "frame1.safetensors"))
    assert f0["inputs.is_first_frame"].item() == 1 and f1["inputs.is_first_frame"].item() == 0
    assert f1["inputs.timestamp"].item() - f0["inputs.timestamp"].item() == 0.5
    # The state carried into frame 1 is the state after frame 0.
    for k in f0:
        if k.startswith("state_out."):
            assert torch.equal(f0[k], f1["state_in." + k[len("state_out."):]]), k
    # Splice: the vision tokens sit at the placeholder position of the prompt.
    for f in (f0, f1):
        k = f["llm.image_token_pos"].item()
        n = f["out.vision_tokens"].shape[1]
        assert f["llm.prompt_ids"][k].item() == -200
        assert torch.equal(f["llm.inputs_embeds"][0, k:k + n], f["out.vision_tokens"][0])
        assert f["llm.inputs_embeds"].shape[1] == f["llm.prompt_ids"].numel() - 1 + n
        # Teacher-forced row P-1 is the first generation step.
        P = f["llm.inputs_embeds"].shape[1]
        row = P - 1 - f["llm.tf_logits_first_row"].item()
        torch.testing.assert_close(f["llm.tf_logits"][row], f["llm.greedy_first_logits"],
                                   rtol=1e-5, atol=1e-5)
        assert f["llm.greedy_ids"][0].item() == f["llm.greedy_first_logits"].argmax().item()


def test_pth_with_pickled_metadata_needs_trust(tmp_path, models):
    import argparse
    vision, llm = models
    hf = _hf_folder(str(tmp_path / "hf"), llm)
    pth = str(tmp_path / "meta.pth")
    torch.save({"meta": {"config": argparse.Namespace(lr=1)}, "state_dict": vision.state_dict()}, pth)
    with pytest.raises(C.CheckpointError, match="--trust-pickle"):
        C.read_torch_state_dict(pth)
    out = str(tmp_path / "ck")
    assert omnidrive_export.main(["--pth", pth, "--vision-config", "tiny", "--hf-llama", hf,
                                  "--trust-pickle", "--out", out]) == 0
    _assert_same_weights(C.load_vision(out).state_dict(), vision.state_dict())
    assert omnidrive_export.main(["--pth", pth, "--vision-config", "tiny", "--hf-llama", hf,
                                  "--out", out]) == 1
