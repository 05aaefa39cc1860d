"""The Video LDM: inflated video UNet, its conditioning, VAE and weight groups."""

from __future__ import annotations

import importlib
from typing import Any

from drivesim.models.blend import AlphaBlender
from drivesim.models.build import build_video_unet
from drivesim.models.condition import ConditionResiduals, VideoCondition
from drivesim.models.video_unet import VideoUNet

# Imported on first use: the text encoder, VAE and LoRA pull in transformers/peft, which the
# UNet alone does not need.
_LAZY = {
    "ConditionEncoders": "drivesim.models.conditioning",
    "ConditionOptions": "drivesim.models.conditioning",
    "TextEncoder": "drivesim.models.text",
    "VideoVAE": "drivesim.models.vae",
    "TemporalDecoder": "drivesim.models.temporal_decoder",
    "LoraOptions": "drivesim.models.lora",
    "add_lora": "drivesim.models.lora",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["AlphaBlender", "ConditionResiduals", "VideoCondition", "VideoUNet", "build_video_unet", *_LAZY]
