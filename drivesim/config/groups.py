"""Schemas of the config groups other than synth; each option's YAML in conf/<group>/ extends one.

Issues that land a capability extend the matching dataclass (and only it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING


@dataclass
class ModelConfig:
    """A video UNet: a diffusers UNet2DConditionModel config (or local weights) plus temporal options."""

    name: str = MISSING
    pretrained: str | None = None
    unet: dict[str, Any] = field(default_factory=dict)
    num_frames: int = 4
    latent_channels: int = 4
    latent_size: list[int] = field(default_factory=lambda: [8, 16])


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


@dataclass
class StageConfig:
    """Which part of the cascade trains, and which weight groups it updates."""

    name: str = MISSING
    train_groups: list[str] = field(default_factory=list)


@dataclass
class TrainerConfig:
    accelerator: str = "cpu"
    devices: int = 1
    max_steps: int = 100
    precision: str = "32-true"
    log_every_n_steps: int = 10


@dataclass
class SamplerConfig:
    name: str = "ddim"
    steps: int = 25
    eta: float = 0.0
    context_guidance: float = 1.0


@dataclass
class ScenarioConfig:
    name: str = "free_drive"
    seconds: float = 10.0
