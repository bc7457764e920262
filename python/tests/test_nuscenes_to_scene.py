"""nuscenes_to_scene.py on a small hand-made nuScenes table set: the scene format it writes, the
planning command and CAN-bus rules (spec §1.1, A9), its errors, and (when the C++ build exists)
that `omnirt run` accepts the result."""
import json
import math
import os
import subprocess
import sys

import pytest
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import nuscenes_to_scene as nts  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CAMS = nts.CAMERAS


def yaw_quat(yaw):
    return [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]


def make_dataset(root, version="v1.0-mini"):
    """One scene of three keyframes. Ego: (0,0) facing +x, then (5,0) facing +y, then (10,3)."""
    os.makedirs(os.path.join(root, version))
    os.makedirs(os.path.join(root, "samples"))
    tables = {k: [] for k in ["scene", "sample", "sample_data", "calibrated_sensor", "sensor",
                              "ego_pose", "log"]}
    tables["log"].append({"token": "log0", "location": "singapore-onenorth"})
    tables["scene"].append({"token": "sc0", "name": "scene-0001", "log_token": "log0",
                            "first_sample_token": "s0"})
    poses = [((0.0, 0.0, 0.0), 0.0), ((5.0, 0.0, 0.0), math.pi / 2), ((10.0, 3.0, 0.0), 0.0)]
    for ch in CAMS + ["LIDAR_TOP"]:
        tables["sensor"].append({"token": "sen_" + ch, "channel": ch})
        tables["calibrated_sensor"].append({
            "token": "cs_" + ch, "sensor_token": "sen_" + ch, "translation": [1.5, 0.1, 1.6],
            "rotation": [0.5, -0.5, 0.5, -0.5],
            "camera_intrinsic": [[1266.4, 0.0, 816.3], [0.0, 1266.4, 491.5], [0.0, 0.0, 1.0]]
            if ch != "LIDAR_TOP" else []})
    for i, ((x, y, z), yaw) in enumerate(poses):
        utime = 1_000_000 * (i + 1)
        tables["sample"].append({"token": f"s{i}", "timestamp": utime,
                                 "next": f"s{i + 1}" if i + 1 < len(poses) else "",
                                 "scene_token": "sc0"})
        for ch in CAMS + ["LIDAR_TOP"]:
            tables["ego_pose"].append({"token": f"ep{i}_{ch}", "translation": [x, y, z],
                                       "rotation": yaw_quat(yaw), "timestamp": utime})
            fn = f"samples/{ch}_{i}.png"
            if ch != "LIDAR_TOP":
                Image.new("RGB", (32, 18), (10 * i, 40, 90)).save(os.path.join(root, fn))
            tables["sample_data"].append({
                "token": f"sd{i}_{ch}", "sample_token": f"s{i}", "is_key_frame": True,
                "calibrated_sensor_token": "cs_" + ch, "ego_pose_token": f"ep{i}_{ch}",
                "filename": fn})
        # a sweep (not a keyframe): must be ignored
        tables["sample_data"].append({
            "token": f"sweep{i}", "sample_token": f"s{i}", "is_key_frame": False,
            "calibrated_sensor_token": "cs_CAM_FRONT", "ego_pose_token": f"ep{i}_CAM_FRONT",
            "filename": "samples/does_not_exist.jpg"})
    for name, rows in tables.items():
        with open(os.path.join(root, version, name + ".json"), "w") as f:
            json.dump(rows, f)
    os.makedirs(os.path.join(root, "can_bus"))
    msgs = [{"utime": 500_000, "orientation": [1, 0, 0, 0], "accel": [1, 2, 3],
             "rotation_rate": [4, 5, 6], "vel": [7, 8, 9]},
            {"utime": 1_200_000, "orientation": [0, 1, 0, 0], "accel": [11, 12, 13],
             "rotation_rate": [14, 15, 16], "vel": [17, 18, 19]}]
    with open(os.path.join(root, "can_bus", "scene-0001_pose.json"), "w") as f:
        json.dump(msgs, f)
    return root


def test_scene_format_command_and_can_bus(tmp_path):
    root = make_dataset(str(tmp_path / "nus"))
    out = str(tmp_path / "scene")
    doc = nts.convert(root, "v1.0-mini", "scene-0001", out, can_bus_root=root)
    with open(os.path.join(out, "scene.json")) as f:
        assert json.load(f) == doc
    assert doc["format"] == "omnirt-scene" and doc["location"] == "singapore-onenorth"
    assert [fr["timestamp"] for fr in doc["frames"]] == [1.0, 2.0, 3.0]
    assert set(doc["calibration"]) == set(CAMS)
    assert doc["calibration"]["CAM_FRONT"]["intrinsics"][0][0] == 1266.4
    for fr in doc["frames"]:
        assert set(fr["images"]) == set(CAMS)
        assert all(os.path.isfile(p) for p in fr["images"].values())
        assert "calibration" not in fr  # same calibration throughout: only at scene level
    # Frame 0: the last future waypoint (10, 3) is 3 m to the left -> 0. Frame 1 faces +y at
    # (5, 0): (10, 3) is 5 m to its right -> 1. Frame 2 has no future -> 2.
    assert [fr["command"] for fr in doc["frames"]] == [0, 1, 2]
    # A9: orientation of the last message at/before t = 1 s, the rest from the next message.
    assert doc["frames"][0]["can_bus"] == [1, 0, 0, 0, 11, 12, 13, 14, 15, 16, 17, 18, 19]
    # t = 2 s: the last message is also the next one.
    assert doc["frames"][1]["can_bus"] == [0, 1, 0, 0, 11, 12, 13, 14, 15, 16, 17, 18, 19]


def test_without_can_bus_zeros_and_copied_images(tmp_path):
    root = make_dataset(str(tmp_path / "nus"))
    out = str(tmp_path / "scene")
    doc = nts.convert(root, "v1.0-mini", "sc0", out, copy_images=True, max_frames=2)
    assert len(doc["frames"]) == 2
    assert all(v == 0.0 for v in doc["frames"][0]["can_bus"])
    rel = doc["frames"][1]["images"]["CAM_BACK"]
    assert not os.path.isabs(rel) and os.path.isfile(os.path.join(out, rel))


def test_errors_name_the_table_or_scene(tmp_path):
    root = make_dataset(str(tmp_path / "nus"))
    with pytest.raises(nts.ConversionError, match="scene 'scene-9999' not in"):
        nts.convert(root, "v1.0-mini", "scene-9999", str(tmp_path / "o1"))
    os.remove(os.path.join(root, "v1.0-mini", "ego_pose.json"))
    with pytest.raises(nts.ConversionError, match="ego_pose"):
        nts.convert(root, "v1.0-mini", "scene-0001", str(tmp_path / "o2"))
    assert nts.main(["--dataroot", root, "--version", "v1.0-mini", "--scene", "scene-0001",
                     "--out", str(tmp_path / "o3")]) == 1


def test_missing_camera_keyframe_is_an_error(tmp_path):
    root = make_dataset(str(tmp_path / "nus"))
    path = os.path.join(root, "v1.0-mini", "sample_data.json")
    with open(path) as f:
        rows = [r for r in json.load(f) if r["token"] != "sd1_CAM_BACK_LEFT"]
    with open(path, "w") as f:
        json.dump(rows, f)
    with pytest.raises(nts.ConversionError, match="frame 1.*CAM_BACK_LEFT"):
        nts.convert(root, "v1.0-mini", "scene-0001", str(tmp_path / "o"))


def test_omnirt_run_accepts_the_converted_scene(tmp_path):
    cli = os.path.join(REPO, "build", "omnirt")
    if not os.access(cli, os.X_OK):
        pytest.skip("build/omnirt not built")
    root = make_dataset(str(tmp_path / "nus"))
    scene = str(tmp_path / "scene")
    nts.convert(root, "v1.0-mini", "scene-0001", scene, can_bus_root=root)
    out = str(tmp_path / "run")
    r = subprocess.run([cli, "run", scene, "--model", os.path.join(REPO, "tests/data/tiny_ckpt"),
                        "--device", "cpu", "--out", out, "--max-new", "4", "--greedy"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    for i in range(3):
        with open(os.path.join(out, f"frame_{i:03d}.json")) as f:
            assert json.load(f)["status"] == "ok"
