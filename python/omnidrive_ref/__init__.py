"""Pure-PyTorch reference of OmniDrive (eva_base_tinyllama): the vision part (this package's
config/eva_vit/heads/vision/init modules) and the LLM side (added alongside)."""

from .config import OmniDriveConfig
from .vision import OmniDriveVision, VisionState, STATE_FIELDS
from .init import init_random

__all__ = ["OmniDriveConfig", "OmniDriveVision", "VisionState", "STATE_FIELDS", "init_random"]
