#!/usr/bin/env python3
"""Converts one nuScenes scene into omnirt's scene format (docs/scene_format.md), for users who
have the dataset. Reads the nuScenes JSON tables directly (no devkit needed):

    python python/nuscenes_to_scene.py --dataroot /data/nuscenes --version v1.0-mini \\
        --scene scene-0061 --out scenes/scene-0061 [--can-bus /data/nuscenes] [--copy-images]

Per keyframe (sample) it writes: the six cameras' image paths (absolute, or copied with
--copy-images), their calibration (intrinsics, sensor->ego), the ego pose (ego->global, taken
from the LIDAR_TOP sample_data as OmniDrive's data infos do), the timestamp in seconds, the
high-level command and the CAN-bus vector, following OmniDrive's own derivations:
  * command (spec §1.1, trajectory_api.get_planning_label): the ego positions of the next 6
    keyframes expressed in the current ego frame; the last one that exists decides: y >= 2 m ->
    0 (turn left), y <= -2 m -> 1 (turn right), else 2 (forward); 2 without a future.
  * can_bus (spec §1.1 and ambiguity A9, update_coords._get_can_bus_info): from the CAN-bus
    expansion's `<scene>_pose.json` when --can-bus points at a folder holding `can_bus/`:
    the orientation of the last message at or before the sample time, and accel, rotation rate
    and velocity of the message after it (the original's loop-variable behaviour, reproduced on
    purpose so that inputs match the model's training data); zeros without CAN data.
"""
import argparse
import json
import math
import os
import shutil
import sys

CAMERAS = ["CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT",
           "CAM_BACK_RIGHT"]
FUTURE_STEPS = 6


class ConversionError(Exception):
    pass


def load_table(dataroot, version, name):
    path = os.path.join(dataroot, version, name + ".json")
    if not os.path.isfile(path):
        raise ConversionError(f"{path}: nuScenes table '{name}' not found "
                              f"(expected {dataroot}/{version}/{name}.json)")
    try:
        with open(path) as f:
            rows = json.load(f)
    except json.JSONDecodeError as e:
        raise ConversionError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(rows, list):
        raise ConversionError(f"{path}: expected a JSON list of records")
    return rows


def by_token(rows, table):
    out = {}
    for r in rows:
        if "token" not in r:
            raise ConversionError(f"{table}: a record without 'token'")
        out[r["token"]] = r
    return out


def quat_to_matrix(q):
    w, x, y, z = q
    return [[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]]


def global_to_ego(pose, point):
    """A global point in the ego frame of `pose` (R^T (p - t))."""
    r = quat_to_matrix(pose["rotation"])
    d = [point[i] - pose["translation"][i] for i in range(3)]
    return [sum(r[j][i] * d[j] for j in range(3)) for i in range(3)]


def planning_command(current_pose, future_poses):
    """OmniDrive's get_planning_label: the last existing future waypoint's lateral offset."""
    if not future_poses:
        return 2
    y = global_to_ego(current_pose, future_poses[-1]["translation"])[1]
    if y >= 2.0:
        return 0
    if y <= -2.0:
        return 1
    return 2


def can_bus_vector(messages, utime):
    """13 values: orientation (4) of the last message at/before `utime`; accel, rotation rate and
    velocity (9) of the message after it (A9). Zeros when no message precedes the sample."""
    before = [i for i, m in enumerate(messages) if m["utime"] <= utime]
    if not before:
        return [0.0] * 13
    i = before[-1]
    nxt = messages[min(i + 1, len(messages) - 1)]
    vec = list(messages[i]["orientation"]) + list(nxt["accel"]) + list(nxt["rotation_rate"]) + \
        list(nxt["vel"])
    if len(vec) != 13:
        raise ConversionError("CAN-bus pose message with unexpected field sizes "
                              f"(got {len(vec)} values, expected 4 + 3 + 3 + 3)")
    return [float(v) for v in vec]


def convert(dataroot, version, scene_name, out_dir, can_bus_root=None, copy_images=False,
            max_frames=None):
    scenes = load_table(dataroot, version, "scene")
    samples = by_token(load_table(dataroot, version, "sample"), "sample")
    sample_data = load_table(dataroot, version, "sample_data")
    calibrated = by_token(load_table(dataroot, version, "calibrated_sensor"), "calibrated_sensor")
    sensors = by_token(load_table(dataroot, version, "sensor"), "sensor")
    ego_poses = by_token(load_table(dataroot, version, "ego_pose"), "ego_pose")
    logs = by_token(load_table(dataroot, version, "log"), "log")

    scene = next((s for s in scenes if s.get("name") == scene_name or s.get("token") == scene_name),
                 None)
    if scene is None:
        names = ", ".join(s.get("name", "?") for s in scenes[:10])
        raise ConversionError(f"scene '{scene_name}' not in {version}/scene.json "
                              f"(first scenes: {names})")
    location = logs.get(scene.get("log_token"), {}).get("location", "")

    # Keyframe sample_data of each sample, by channel.
    keyframes = {}
    for sd in sample_data:
        if not sd.get("is_key_frame"):
            continue
        cs = calibrated.get(sd["calibrated_sensor_token"])
        if cs is None:
            raise ConversionError(f"sample_data {sd['token']}: unknown calibrated_sensor_token")
        channel = sensors[cs["sensor_token"]]["channel"]
        keyframes.setdefault(sd["sample_token"], {})[channel] = sd

    chain = []
    token = scene["first_sample_token"]
    while token:
        if token not in samples:
            raise ConversionError(f"scene {scene_name}: sample {token} missing from sample.json")
        chain.append(samples[token])
        token = samples[token].get("next", "")

    can_messages = None
    if can_bus_root:
        path = os.path.join(can_bus_root, "can_bus", f"{scene['name']}_pose.json")
        if os.path.isfile(path):
            with open(path) as f:
                can_messages = sorted(json.load(f), key=lambda m: m["utime"])
        else:
            print(f"warning: {path} not found: can_bus set to zeros", file=sys.stderr)

    os.makedirs(out_dir, exist_ok=True)
    frames = []
    calibration = None
    for idx, sample in enumerate(chain):
        if max_frames is not None and idx >= max_frames:
            break
        kf = keyframes.get(sample["token"], {})
        missing = [c for c in CAMERAS + ["LIDAR_TOP"] if c not in kf]
        if missing:
            raise ConversionError(f"sample {sample['token']} (frame {idx}): no keyframe for "
                                  f"{', '.join(missing)}")
        pose = ego_poses[kf["LIDAR_TOP"]["ego_pose_token"]]
        future = []
        for s in chain[idx + 1: idx + 1 + FUTURE_STEPS]:
            lidar = keyframes.get(s["token"], {}).get("LIDAR_TOP")
            if lidar is None:
                break
            future.append(ego_poses[lidar["ego_pose_token"]])
        frame_cal, images = {}, {}
        for cam in CAMERAS:
            sd = kf[cam]
            cs = calibrated[sd["calibrated_sensor_token"]]
            frame_cal[cam] = {"intrinsics": cs["camera_intrinsic"],
                              "sensor2ego_rotation": cs["rotation"],
                              "sensor2ego_translation": cs["translation"]}
            src = os.path.join(dataroot, sd["filename"])
            if copy_images:
                rel = os.path.join("frames", f"{idx:03d}", cam + os.path.splitext(src)[1])
                os.makedirs(os.path.dirname(os.path.join(out_dir, rel)), exist_ok=True)
                shutil.copyfile(src, os.path.join(out_dir, rel))
                images[cam] = rel
            else:
                images[cam] = os.path.abspath(src)
        frame = {
            "token": sample["token"],
            "timestamp": sample["timestamp"] / 1e6,
            "images": images,
            "ego2global_rotation": pose["rotation"],
            "ego2global_translation": pose["translation"],
            "can_bus": can_bus_vector(can_messages, sample["timestamp"]) if can_messages
            else [0.0] * 13,
            "command": planning_command(pose, future),
        }
        if calibration is None:
            calibration = frame_cal
        elif frame_cal != calibration:
            frame["calibration"] = frame_cal  # per-frame override (docs/scene_format.md)
        frames.append(frame)

    doc = {"format": "omnirt-scene", "version": 1, "name": scene["name"], "location": location,
           "source": {"nuscenes": {"dataroot": os.path.abspath(dataroot), "version": version,
                                   "scene_token": scene["token"]}},
           "calibration": calibration, "frames": frames}
    with open(os.path.join(out_dir, "scene.json"), "w") as f:
        json.dump(doc, f, indent=1)
    return doc


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataroot", required=True, help="nuScenes root (holds samples/, v1.0-*/)")
    ap.add_argument("--version", default="v1.0-trainval")
    ap.add_argument("--scene", required=True, help="scene name (scene-0061) or token")
    ap.add_argument("--out", required=True, help="output scene folder")
    ap.add_argument("--can-bus", help="folder holding the CAN-bus expansion's can_bus/")
    ap.add_argument("--copy-images", action="store_true",
                    help="copy the images into the scene folder (default: absolute paths)")
    ap.add_argument("--max-frames", type=int)
    a = ap.parse_args(argv)
    try:
        doc = convert(a.dataroot, a.version, a.scene, a.out, a.can_bus, a.copy_images,
                      a.max_frames)
    except ConversionError as e:
        print(f"nuscenes_to_scene: {e}", file=sys.stderr)
        return 1
    print(f"wrote {len(doc['frames'])} frames to {os.path.join(a.out, 'scene.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
