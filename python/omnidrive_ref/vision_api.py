"""The few entry points of the vision reference (config.py, vision.py, init.py) that the
exporter, the fixture generator and the ONNX export use, in one place."""
from __future__ import annotations

import json

from .config import OmniDriveConfig
from .init import init_random
from .vision import STATE_FIELDS, OmniDriveVision, VisionState  # noqa: F401

SIZES = ("tiny", "full")


def config_by_name(name: str) -> OmniDriveConfig:
    if name not in SIZES:
        raise ValueError(f"vision config {name!r}: expected one of {SIZES}")
    return OmniDriveConfig.tiny() if name == "tiny" else OmniDriveConfig.full()


def config_to_json(cfg: OmniDriveConfig) -> dict:
    return json.loads(cfg.to_json())


def config_from_json(d: dict) -> OmniDriveConfig:
    return OmniDriveConfig.from_dict(d)


def build_vision(cfg: OmniDriveConfig) -> OmniDriveVision:
    return OmniDriveVision(cfg).eval()


def init_vision_random(model: OmniDriveVision, seed: int) -> OmniDriveVision:
    return init_random(model, seed)
