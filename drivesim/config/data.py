"""Schemas of the data group (conf/data/): synthetic, nuScenes and video-folder sources."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING


@dataclass
class SyntheticDataConfig:
    name: str = "synthetic"
    root: str = "outputs/synth"
    version: str = "v1.0-synth"
    camera: str = "CAM_FRONT"
    frames: int = 4
    fps: float = 3.0
    size: list[int] = field(default_factory=lambda: [64, 128])
    batch_size: int = 2
    num_workers: int = 0
    on_error: str = "raise"


@dataclass
class NuScenesDataConfig:
    name: str = "nuscenes"
    root: str = MISSING
    version: str = "v1.0-trainval"
    camera: str = "CAM_FRONT"
    frames: int = 4
    fps: float = 3.0
    size: list[int] = field(default_factory=lambda: [128, 256])
    batch_size: int = 2
    num_workers: int = 2
    on_error: str = "raise"


@dataclass
class VideoDataConfig:
    name: str = "videos"
    root: str = MISSING
    frames: int = 4
    fps: float = 3.0
    size: list[int] = field(default_factory=lambda: [128, 256])
    batch_size: int = 2
    num_workers: int = 2
    on_error: str = "raise"
