import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

import export_onnx as E  # noqa: E402
from fixture_compare import assert_close_rel, compare_memory, rel_tol  # noqa: E402
from omnidrive_ref import checkpoint as C  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY_CKPT = os.path.join(REPO, "tests", "data", "tiny_ckpt")
FIXTURES = os.path.join(REPO, "tests", "data", "fixtures")
FRAME_KEYS = ["img", "img2lidars", "command", "can_bus", "is_first_frame", "ego_pose", "timestamp",
              "ego_pose_inv"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    vision = C.load_vision(TINY_CKPT)
    path = str(tmp_path_factory.mktemp("onnx") / "vision.onnx")
    E.export(vision, path)
    return vision, path, ort.InferenceSession(path, providers=["CPUExecutionProvider"])


def _feeds(vision, fx, state):
    feeds = {k: fx[f"inputs.{k}"] for k in FRAME_KEYS}
    feeds["intrinsics"] = torch.eye(4).expand(1, vision.cfg.num_cams, 4, 4)
    feeds.update(state)
    return feeds


def test_graph_io_names_and_shapes(exported):
    vision, path, sess = exported
    model = onnx.load(path)
    assert model.opset_import[0].version == 17
    assert [i.name for i in sess.get_inputs()] == E.INPUT_NAMES
    assert [o.name for o in sess.get_outputs()] == E.OUTPUT_NAMES
    shapes = E.input_shapes(vision.cfg)
    for i in sess.get_inputs():
        assert i.shape == shapes[i.name] and i.type == "tensor(float)", i.name
    outs = {o.name: o.shape for o in sess.get_outputs()}
    cfg = vision.cfg
    assert outs["vision_embeded"] == [1, 2 * cfg.num_extra + 1, cfg.out_dims]
    assert outs["all_cls_scores"] == [cfg.dec_layers, 1, cfg.num_query + cfg.num_propagated, 10]
    assert outs["all_lane_preds_one2one"] == [cfg.dec_layers, 1, cfg.num_lane_one2one, 33]
    for m in E.MEMORY_NAMES:
        assert outs[f"{m}_out"] == shapes[f"{m}_in"], m


def test_onnx_matches_reference_over_two_frames(exported):
    """The runner's loop: zero buffers, every *_out copied into *_in for the next frame."""
    vision, _, sess = exported
    shapes = E.input_shapes(vision.cfg)
    state = {f"{m}_in": torch.zeros(shapes[f"{m}_in"]) for m in E.MEMORY_NAMES}
    topk = {"bbox": vision.cfg.topk, "map": vision.cfg.lane_topk}
    for i in range(2):
        fx = load_file(os.path.join(FIXTURES, f"frame{i}.safetensors"))
        out = E.run_onnx(sess, _feeds(vision, fx, state))
        assert_close_rel("vision_embeded", fx["out.vision_tokens"], out["vision_embeded"], rel_tol(i))
        for k in E.HEAD_OUTPUTS[1:]:
            assert_close_rel(k, fx[f"out.{k}"], out[k], rel_tol(i))
        compare_memory(fx, out, topk, rel_tol(i), prefix_ref="state_out.", suffix_got="_out")
        for m in ("memory_canbus_bbox", "sample_time_bbox", "sample_time_map"):
            assert_close_rel(m, fx[f"state_out.{m}"], out[f"{m}_out"], rel_tol(i))
        state = {f"{m}_in": out[f"{m}_out"] for m in E.MEMORY_NAMES}


def test_is_first_frame_discards_the_incoming_memory(exported):
    vision, _, sess = exported
    shapes = E.input_shapes(vision.cfg)
    fx = load_file(os.path.join(FIXTURES, "frame0.safetensors"))
    g = torch.Generator().manual_seed(3)
    junk = {f"{m}_in": torch.randn(shapes[f"{m}_in"], generator=g) for m in E.MEMORY_NAMES}
    zero = {f"{m}_in": torch.zeros(shapes[f"{m}_in"]) for m in E.MEMORY_NAMES}
    a = E.run_onnx(sess, _feeds(vision, fx, junk))
    b = E.run_onnx(sess, _feeds(vision, fx, zero))
    for k in E.OUTPUT_NAMES:
        assert_close_rel(k, b[k], a[k], 1e-6)
    # The flag is live in the graph: without it the (zero) memory is kept and the first-frame
    # pseudo reference points are not added, which changes the result.
    feeds = _feeds(vision, fx, zero)
    feeds["is_first_frame"] = torch.zeros(1)
    c = E.run_onnx(sess, feeds)
    assert (c["all_cls_scores"] - b["all_cls_scores"]).abs().max() > 1e-3


def test_full_size_io_shapes_are_the_reference_deployments():
    from omnidrive_ref.config import OmniDriveConfig
    s = E.input_shapes(OmniDriveConfig.full())
    assert s["img"] == [1, 6, 3, 640, 640] and s["img2lidars"] == [1, 6, 4, 4]
    assert s["memory_embedding_bbox_in"] == [1, 900, 256]
    assert s["memory_reference_point_bbox_in"] == [1, 900, 3]
    assert s["memory_timestamp_bbox_in"] == [1, 900, 1]
    assert s["memory_egopose_bbox_in"] == [1, 900, 4, 4]
    assert s["memory_canbus_bbox_in"] == [1, 3, 14]
    assert s["memory_reference_point_map_in"] == [1, 900, 11, 3]
    assert s["memory_embedding_map_in"] == [1, 900, 256]
    assert s["sample_time_bbox_in"] == s["sample_time_map_in"] == s["timestamp"] == [1]
