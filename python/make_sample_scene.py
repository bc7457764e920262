#!/usr/bin/env python3
"""Renders a small synthetic driving scene in omnirt's scene format (docs/scene_format.md),
deterministically: a straight 4-lane road with lane markings on a ground plane, a few box-shaped
cars, the ego car driving forward, six nuScenes-like cameras (real-looking intrinsics and
mounting), plus ground truth (boxes in nuScenes conventions, the 6-waypoint planning GT).

    python python/make_sample_scene.py --out examples/sample_scene            # 6 cams, 1600x900
    python python/make_sample_scene.py --out DIR --cameras 2 --width 160 --height 90  # tiny

Only numpy + Pillow. The pictures are for running the pipeline end to end, not for accuracy.
"""
import argparse
import json
import math
import os

import numpy as np
from PIL import Image, ImageDraw

CAMERAS = ["CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT",
           "CAM_BACK_RIGHT"]
# Mounting close to nuScenes' (yaw of the optical axis in the ego frame, degrees; position, m;
# focal length in pixels at 1600x900).
MOUNT = {
    "CAM_FRONT": (0.0, [1.70, 0.02, 1.51], 1266.4),
    "CAM_FRONT_RIGHT": (-55.0, [1.55, -0.49, 1.50], 1260.8),
    "CAM_FRONT_LEFT": (55.0, [1.52, 0.49, 1.51], 1272.6),
    "CAM_BACK": (180.0, [0.03, 0.00, 1.58], 809.2),
    "CAM_BACK_LEFT": (110.0, [1.04, 0.48, 1.59], 1256.7),
    "CAM_BACK_RIGHT": (-110.0, [1.01, -0.48, 1.56], 1259.5),
}
LANE_WIDTH = 3.5
SPEED = 5.0  # m/s of the ego car along global +x
# Other cars: (global x at t=0, lane centre y, speed m/s, colour, size w, l, h)
CARS = [
    (14.0, -1.75, 3.0, (180, 30, 30), (1.9, 4.6, 1.6)),
    (9.0, 1.75, -6.0, (30, 60, 170), (1.8, 4.3, 1.5)),
    (30.0, 1.75, -4.0, (220, 200, 40), (2.0, 4.8, 1.8)),
    (-12.0, -1.75, 5.5, (40, 140, 60), (1.9, 4.5, 1.6)),
    (6.0, -5.25, 0.0, (120, 120, 130), (2.5, 9.0, 3.2)),  # parked truck (label "truck": l > 6 m)
]


def quat_from_matrix(R):
    """Unit quaternion (w, x, y, z) of a rotation matrix (Shepperd's method)."""
    t = np.trace(R)
    if t > 0:
        s = math.sqrt(t + 1.0) * 2
        q = [0.25 * s, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s]
    else:
        i = int(np.argmax(np.diag(R)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = math.sqrt(1.0 + R[i, i] - R[j, j] - R[k, k]) * 2
        q = [0.0] * 4
        q[0] = (R[k, j] - R[j, k]) / s
        q[1 + i] = 0.25 * s
        q[1 + j] = (R[j, i] + R[i, j]) / s
        q[1 + k] = (R[k, i] + R[i, k]) / s
    q = np.array(q)
    q /= np.linalg.norm(q)
    return q if q[0] >= 0 else -q


def rot_z(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


# camera axes (x right, y down, z forward) -> ego axes (x forward, y left, z up), yaw 0
CAM_TO_EGO_0 = np.array([[0, 0, 1.0], [-1, 0, 0], [0, -1, 0]])


def camera_model(name, width, height):
    yaw, t, f1600 = MOUNT[name]
    f = f1600 * width / 1600.0
    K = np.array([[f, 0, width / 2.0 + 0.01 * width], [0, f, height / 2.0 + 0.02 * height],
                  [0, 0, 1.0]])
    R = rot_z(math.radians(yaw)) @ CAM_TO_EGO_0
    return K, R, np.array(t, dtype=np.float64)


def render_camera(K, R, t, ego_x, width, height, cars_now):
    """Ray-casts the ground plane (z = 0, ego frame == global frame shifted by ego_x) and draws
    the cars as depth-sorted box faces."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    rays_cam = np.stack([(u + 0.5 - K[0, 2]) / K[0, 0], (v + 0.5 - K[1, 2]) / K[1, 1],
                         np.ones_like(u)], -1)
    rays = rays_cam @ R.T  # ego frame
    dz = rays[..., 2]
    hit = dz < -1e-6
    s = np.where(hit, -t[2] / np.where(hit, dz, -1), 0)
    gx = t[0] + s * rays[..., 0] + ego_x  # global x
    gy = t[1] + s * rays[..., 1] - 1.75  # global y (the ego drives in the lane at y = -1.75)
    dist = s * np.linalg.norm(rays, axis=-1)
    img = np.zeros((height, width, 3))
    # sky: gradient by elevation
    elev = np.clip(rays[..., 2] / np.linalg.norm(rays, axis=-1), 0, 1)
    sky = np.stack([150 + 60 * elev, 180 + 50 * elev, 230 + 20 * elev], -1)
    road = np.abs(gy) < 2 * LANE_WIDTH
    ground = np.where(road[..., None], np.array([95.0, 95, 100]), np.array([70.0, 120, 60]))
    # lane markings: solid edges at |y| = 7, dashed at +-3.5, double yellow centre at y = 0
    mark = np.zeros_like(gy, dtype=bool)
    half = 0.08
    mark |= np.abs(np.abs(gy) - 2 * LANE_WIDTH) < half
    mark |= (np.abs(np.abs(gy) - LANE_WIDTH) < half) & (np.mod(gx, 9.0) < 3.0)
    yellow = np.abs(np.abs(gy) - 0.12) < 0.06
    ground = np.where(mark[..., None], np.array([235.0, 235, 235]), ground)
    ground = np.where(yellow[..., None], np.array([230.0, 190, 40]), ground)
    # texture so the images are not flat (deterministic: a function of the ground position)
    tex = 6 * np.sin(gx * 3.1) * np.cos(gy * 2.3)
    ground = ground + tex[..., None]
    fog = np.clip(dist / 120.0, 0, 1)[..., None]
    ground = ground * (1 - fog) + sky * fog
    img = np.where(hit[..., None], ground, sky)
    pil = Image.fromarray(np.clip(np.round(img), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    faces = []
    for (cx, cy, yaw, colour, (w, l, h)) in cars_now:
        c, s_ = math.cos(yaw), math.sin(yaw)
        corners = []
        for dx, dy, dz_ in [(1, 1, 0), (1, -1, 0), (-1, -1, 0), (-1, 1, 0), (1, 1, 1), (1, -1, 1),
                            (-1, -1, 1), (-1, 1, 1)]:
            x = dx * l / 2
            y = dy * w / 2
            corners.append([cx - ego_x + c * x - s_ * y, cy + s_ * x + c * y, dz_ * h])
        corners = np.array(corners)
        cam = (corners - t) @ R  # ego -> camera
        for idx, shade in [((0, 1, 5, 4), 1.0), ((1, 2, 6, 5), 0.8), ((2, 3, 7, 6), 0.7),
                           ((3, 0, 4, 7), 0.85), ((4, 5, 6, 7), 1.15)]:
            poly = clip_near(cam[list(idx)])
            if len(poly) < 3:
                continue
            depth = float(np.mean(np.linalg.norm(cam[list(idx)], axis=1)))
            col = tuple(int(min(255, v_ * shade)) for v_ in colour)
            faces.append((depth, poly, col))
    for depth, poly, col in sorted(faces, key=lambda f: -f[0]):
        pts = [(float(K[0, 0] * p[0] / p[2] + K[0, 2]), float(K[1, 1] * p[1] / p[2] + K[1, 2]))
               for p in poly]
        if max(abs(x) for pt in pts for x in pt) > 1e5:
            continue
        draw.polygon(pts, fill=col, outline=(20, 20, 20))
    return pil


def clip_near(poly, near=0.1):
    """Sutherland-Hodgman against the camera plane z = near."""
    out = []
    n = len(poly)
    for i in range(n):
        a, b = poly[i], poly[(i + 1) % n]
        ina, inb = a[2] >= near, b[2] >= near
        if ina:
            out.append(a)
        if ina != inb:
            r = (near - a[2]) / (b[2] - a[2])
            out.append(a + r * (b - a))
    return out


def car_state(car, time):
    x0, y, v, colour, size = car
    yaw = 0.0 if v >= 0 else math.pi
    return (x0 + v * time, y, yaw, colour, size), v


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--cameras", type=int, default=6)
    ap.add_argument("--width", type=int, default=1600)
    ap.add_argument("--height", type=int, default=900)
    ap.add_argument("--quality", type=int, default=80)
    ap.add_argument("--dt", type=float, default=0.5)
    ap.add_argument("--png", action="store_true", help="write PNG instead of JPEG")
    args = ap.parse_args()
    cams = CAMERAS[:args.cameras]
    os.makedirs(args.out, exist_ok=True)
    t0 = 1533151603.5  # a nuScenes-like epoch, seconds
    calib = {}
    models = {}
    for name in cams:
        K, R, t = camera_model(name, args.width, args.height)
        models[name] = (K, R, t)
        calib[name] = {"intrinsics": np.round(K, 4).tolist(),
                       "sensor2ego_rotation": np.round(quat_from_matrix(R), 8).tolist(),
                       "sensor2ego_translation": t.tolist()}
    scene = {"format": "omnirt-scene", "version": 1, "name": os.path.basename(os.path.abspath(args.out)),
             "location": "boston-seaport", "calibration": calib, "frames": []}
    gt = {"format": "omnirt-scene-gt", "version": 1,
          "class_names": ["car", "truck", "construction_vehicle", "bus", "trailer", "barrier",
                          "motorcycle", "bicycle", "pedestrian", "traffic_cone"],
          "frames": []}
    ext = "png" if args.png else "jpg"
    for fi in range(args.frames):
        time = fi * args.dt
        ego_x = SPEED * time
        cars_now = [car_state(c, time)[0] for c in CARS]
        frame = {"token": f"frame_{fi:03d}", "timestamp": round(t0 + time, 6), "images": {},
                 "ego2global_rotation": [1.0, 0.0, 0.0, 0.0],
                 "ego2global_translation": [600.0 + ego_x, 1640.0 - 1.75, 0.0],
                 "command": 2,
                 # orientation (w, x, y, z), acceleration, rotation rate, velocity
                 "can_bus": [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 9.81, 0.0, 0.0, 0.0, SPEED, 0.0, 0.0]}
        os.makedirs(os.path.join(args.out, "frames", f"{fi:03d}"), exist_ok=True)
        for name in cams:
            K, R, t = models[name]
            # ego at global y = -1.75: shift the world so the ego frame is the render frame
            shifted = [(x, y + 1.75, yaw, col, size) for (x, y, yaw, col, size) in cars_now]
            img = render_camera(K, R, t, ego_x, args.width, args.height,
                                [(x, y, yaw, col, size) for (x, y, yaw, col, size) in shifted])
            rel = f"frames/{fi:03d}/{name}.{ext}"
            path = os.path.join(args.out, rel)
            if args.png:
                img.save(path, optimize=True)
            else:
                img.save(path, quality=args.quality, optimize=True)
            frame["images"][name] = rel
        scene["frames"].append(frame)
        boxes = []
        for car in CARS:
            (x, y, yaw, _, (w, l, h)), v = car_state(car, time)
            # ego frame (ego at global (ego_x, -1.75), no rotation): nuScenes box centre is the
            # geometric centre; size (w, l, h); velocity (vx, vy) m/s in the ego frame.
            boxes.append({"label": "truck" if l > 6 else "car", "center": [x - ego_x, y + 1.75, h / 2], "size": [w, l, h],
                          "yaw": yaw, "velocity": [v - SPEED, 0.0]})
        plan = [[round(SPEED * args.dt * k, 2), 0.0] for k in range(1, 7)]
        gt["frames"].append({"token": frame["token"], "boxes": boxes, "gt_planning": plan,
                             "command": 2})
    with open(os.path.join(args.out, "scene.json"), "w") as f:
        json.dump(scene, f, indent=1)
    with open(os.path.join(args.out, "ground_truth.json"), "w") as f:
        json.dump(gt, f, indent=1)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
