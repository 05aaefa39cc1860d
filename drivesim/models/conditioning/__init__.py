"""Condition encoders of the video UNet (the condition weight group), CFG dropout and guidance.

Attach: `VideoUNet(unet, condition_encoders=ConditionEncoders.for_unet(unet, ConditionOptions()))`.
Train: `sample_context_mask` / `augment_context` build the context, `drop_conditions` makes each
condition absent per sample with its own probability. Sample: `without(cond, names)` gives the
unconditional input, `guided` / `composed` / `nested` combine the outputs with per-condition scales.
"""

from drivesim.models.conditioning.context import (
    augment_context,
    sample_context_mask,
    sample_context_noise_level,
)
from drivesim.models.conditioning.dropout import DROPPABLE, drop_conditions
from drivesim.models.conditioning.encoders import ConditionEncoders
from drivesim.models.conditioning.guidance import composed, guided, nested, without
from drivesim.models.conditioning.options import ConditionOptions, DropoutProbabilities

__all__ = [
    "DROPPABLE",
    "ConditionEncoders",
    "ConditionOptions",
    "DropoutProbabilities",
    "augment_context",
    "composed",
    "drop_conditions",
    "guided",
    "nested",
    "sample_context_mask",
    "sample_context_noise_level",
    "without",
]
