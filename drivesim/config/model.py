"""Schema of the model group (conf/model/): a video UNet and its conditioning."""

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
