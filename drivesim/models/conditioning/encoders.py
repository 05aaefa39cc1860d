"""`ConditionEncoders`: every enabled encoder, turning a `VideoCondition` into `ConditionResiduals`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from drivesim.models.condition import ConditionResiduals, VideoCondition
from drivesim.models.conditioning.boxes import BoxEncoder
from drivesim.models.conditioning.context import ContextEncoder
from drivesim.models.conditioning.context_blend import ContextBlend
from drivesim.models.conditioning.frame_embed import FrameEmbedder
from drivesim.models.conditioning.options import ConditionOptions


class ConditionEncoders(nn.Module):
    """The condition weight group: context, box, label, ego, noise-level and stage encoders.

    Built for one UNet: `block_out_channels` and `time_embed_dim` size the residuals,
    `latent_channels` the context input. Every encoder ends zero-initialised, so attaching this
    module leaves the UNet's output unchanged at init. Boxes are encoded through their 2D image
    boxes (`boxes`); `boxes_3d` rides along in the condition for metrics and is not encoded.
    """

    def __init__(self, options: ConditionOptions, block_out_channels: Sequence[int], time_embed_dim: int,
                 latent_channels: int) -> None:
        super().__init__()
        self.options = options
        self.block_out_channels = tuple(int(c) for c in block_out_channels)
        self.time_embed_dim = int(time_embed_dim)
        self.latent_channels = int(latent_channels)
        o = options
        self.context = (ContextEncoder(latent_channels, self.block_out_channels[0], reference=o.context_reference)
                        if o.context else None)
        self.blend = (ContextBlend(o.context_blend_buckets, o.context_blend_distances)
                      if o.context and o.context_blend else None)
        self.guess_blend = ContextBlend(o.guess_blend_buckets, 1) if o.guess_blend else None
        self.boxes = (BoxEncoder(o.num_box_classes, o.max_instances, o.box_embed_dim, o.box_adapter_width,
                                 self.block_out_channels) if o.boxes else None)
        any_scalar = o.labels or o.ego or o.noise_aug or o.stage or (o.context and o.context_noise)
        self.frame = (FrameEmbedder(labels=o.labels, ego=o.ego, noise_aug=o.noise_aug, stage=o.stage,
                                    context_noise=o.context and o.context_noise,
                                    label_vocab_sizes=o.label_vocab_sizes, max_waypoints=o.max_waypoints,
                                    num_stages=o.num_stages, embed_dim=o.embed_dim,
                                    time_embed_dim=self.time_embed_dim) if any_scalar else None)

    @classmethod
    def for_unet(cls, unet: nn.Module, options: ConditionOptions | None = None) -> ConditionEncoders:
        """Encoders sized for a diffusers `UNet2DConditionModel` or a `VideoUNet` (same config keys)."""
        src: Any = unet
        config = getattr(src, "image_config", None) or src.config
        return cls(options or ConditionOptions(), config["block_out_channels"],
                   src.time_embedding.linear_2.out_features, config["in_channels"])

    def forward(self, cond: VideoCondition, batch: int, frames: int, height: int, width: int) -> ConditionResiduals:
        """Residuals for latents of shape (batch, frames, C, height, width); absent conditions give None."""
        self._refuse_unsupported(cond)
        residuals = ConditionResiduals(down_blocks=[None] * len(self.block_out_channels))
        has_context = None
        if cond.context_latents is not None:
            if self.context is None:
                raise ValueError("VideoCondition.context_latents given but this model has no context encoder")
            latents, mask = cond.context_latents, cond.context_mask
            expected = (batch, frames, self.latent_channels, height, width)
            if tuple(latents.shape) != expected:
                raise ValueError(f"VideoCondition.context_latents must have shape {expected}, got {tuple(latents.shape)}")
            if mask is None or tuple(mask.shape) != (batch, frames):
                got = None if mask is None else tuple(mask.shape)
                raise ValueError(f"VideoCondition.context_mask must have shape {(batch, frames)}, got {got}")
            residuals.conv_in = self.context(latents, mask)
            has_context = mask.to(torch.bool).any(dim=1)
        if cond.boxes is not None:
            residuals.down_blocks = self._boxes(cond, batch, frames, height, width)
        if self.frame is not None:
            residuals.time_emb = self.frame(
                labels=cond.labels, ego_speed=cond.ego_speed, ego_yaw_rate=cond.ego_yaw_rate,
                ego_waypoints=cond.ego_waypoints, noise_aug_level=cond.noise_aug_level,
                stage_id=cond.stage_id, context_noise_level=cond.context_noise_level,
                has_context=has_context, batch=batch, frames=frames)
        return residuals

    def _boxes(self, cond: VideoCondition, batch: int, frames: int, height: int,
               width: int) -> list[Tensor | None]:
        if self.boxes is None:
            raise ValueError("VideoCondition.boxes given but this model has no box encoder")
        boxes = cond.boxes
        assert boxes is not None
        if boxes.ndim != 4 or tuple(boxes.shape[:2]) != (batch, frames) or boxes.shape[3] != 4:
            raise ValueError(f"VideoCondition.boxes must be (B, T, N, 4) with B, T = {batch}, {frames}, "
                             f"got {tuple(boxes.shape)}")
        n = boxes.shape[2]
        for name in ("box_classes", "box_instance_ids", "box_mask"):
            value = getattr(cond, name)
            if value is None and name != "box_instance_ids":
                raise ValueError(f"VideoCondition.{name} is required with boxes")
            if value is not None and tuple(value.shape) != (batch, frames, n):
                raise ValueError(f"VideoCondition.{name} must have shape {(batch, frames, n)}, "
                                 f"got {tuple(value.shape)}")
        assert cond.box_classes is not None and cond.box_mask is not None
        out = self.boxes(boxes, cond.box_classes, cond.box_instance_ids, cond.box_mask, height, width)
        return list(out)

    def _refuse_unsupported(self, cond: VideoCondition) -> None:
        """A condition given to a model without its encoder is an error, never silently ignored."""
        o = self.options
        enabled = {"labels": o.labels, "ego_speed": o.ego, "ego_yaw_rate": o.ego, "ego_waypoints": o.ego,
                   "noise_aug_level": o.noise_aug, "stage_id": o.stage,
                   "context_noise_level": o.context and o.context_noise, "guess": o.guess_blend}
        for name, on in enabled.items():
            if not on and getattr(cond, name) is not None:
                raise ValueError(f"VideoCondition.{name} given but this model has no encoder for it "
                                 "(see ConditionOptions)")
