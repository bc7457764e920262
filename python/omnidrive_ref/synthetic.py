"""Deterministic synthetic per-frame inputs with nuScenes-like geometry (for tests, fixtures and the
smoke run). Not data: random images, a ring of cameras, an ego car driving at ~5 m/s in a large
global frame (so that the global-frame memory round trip is exercised as on nuScenes)."""

from __future__ import annotations

import math
from typing import Dict, Optional

import torch

from .config import OmniDriveConfig


def _rot_z(yaw: float) -> torch.Tensor:
    c, s = math.cos(yaw), math.sin(yaw)
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)


def camera_rig(cfg: OmniDriveConfig) -> torch.Tensor:
    """lidar2img (= ego->image) [1, N, 4, 4] float32 for N cameras spread evenly in yaw.

    Intrinsics mimic the pre-processed nuScenes ones (fx ~ 0.79 W, fy ~ 1.58 H after the 640x320 ->
    640x640 stretch, principal point near the centre)."""
    mats = []
    for i in range(cfg.num_cams):
        yaw = 2 * math.pi * i / cfg.num_cams
        # camera axes in ego frame: z forward (along yaw), x right, y down
        fwd = torch.tensor([math.cos(yaw), math.sin(yaw), 0.0], dtype=torch.float64)
        right = torch.tensor([math.sin(yaw), -math.cos(yaw), 0.0], dtype=torch.float64)
        down = torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64)
        r_cam2ego = torch.stack([right, down, fwd], dim=1)
        t_cam2ego = torch.tensor([1.0 * math.cos(yaw) + 0.5, 0.5 * math.sin(yaw), 1.6],
                                 dtype=torch.float64)
        ego2cam = torch.eye(4, dtype=torch.float64)
        ego2cam[:3, :3] = r_cam2ego.T
        ego2cam[:3, 3] = -r_cam2ego.T @ t_cam2ego
        k = torch.eye(4, dtype=torch.float64)
        k[0, 0] = 0.79 * cfg.img_w
        k[1, 1] = 1.58 * cfg.img_h
        k[0, 2] = 0.51 * cfg.img_w
        k[1, 2] = 0.49 * cfg.img_h
        mats.append(k @ ego2cam)
    return torch.stack(mats).unsqueeze(0).float()


def ego_pose_at(t: float, origin=(600.0, 1600.0, 0.0), speed: float = 5.0,
                yaw_rate: float = 0.05) -> torch.Tensor:
    """ego->global [4, 4] float64 for a car on a gentle arc."""
    yaw = 0.3 + yaw_rate * t
    if abs(yaw_rate) > 1e-9:
        x = speed / yaw_rate * (math.sin(yaw) - math.sin(0.3))
        y = -speed / yaw_rate * (math.cos(yaw) - math.cos(0.3))
    else:
        x, y = speed * t * math.cos(yaw), speed * t * math.sin(yaw)
    m = torch.eye(4, dtype=torch.float64)
    m[:3, :3] = _rot_z(yaw)
    m[:3, 3] = torch.tensor([origin[0] + x, origin[1] + y, origin[2]], dtype=torch.float64)
    return m


def make_frame(cfg: OmniDriveConfig, t: float, seed: int, is_first_frame: bool,
               command: int = 2, img_scale: float = 1.0) -> Dict[str, object]:
    """One frame of inputs for OmniDriveVision.forward_frame (B = 1)."""
    g = torch.Generator().manual_seed(seed)
    img = torch.randn(1, cfg.num_cams, 3, cfg.img_h, cfg.img_w, generator=g) * img_scale
    pose = ego_pose_at(t)
    inv = torch.eye(4, dtype=torch.float64)
    inv[:3, :3] = pose[:3, :3].T
    inv[:3, 3] = -pose[:3, :3].T @ pose[:3, 3]
    yaw = 0.3 + 0.05 * t
    can_bus = torch.zeros(1, 13)
    can_bus[0, 0] = math.cos(yaw / 2)  # quaternion w
    can_bus[0, 3] = math.sin(yaw / 2)  # quaternion z
    can_bus[0, 4:7] = torch.randn(3, generator=g) * 0.3  # accel
    can_bus[0, 7:10] = torch.randn(3, generator=g) * 0.05  # rotation rate
    can_bus[0, 10] = 5.0  # vel
    return {
        "img": img,
        "lidar2img": camera_rig(cfg),
        "ego_pose": pose.float().unsqueeze(0),
        "ego_pose_inv": inv.float().unsqueeze(0),
        "timestamp": float(t),
        "command": torch.tensor([float(command)]),
        "can_bus": can_bus,
        "is_first_frame": bool(is_first_frame),
    }
