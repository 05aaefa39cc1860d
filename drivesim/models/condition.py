"""The typed conditioning of the video UNet, and what the condition encoders hand to its forward loop.

Every field of `VideoCondition` defaults to absent; an absent condition contributes exactly zero.
Shapes use B = batch, T = frames, N = boxes per frame (padded, with `box_mask`), L = text tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import torch
from torch import Tensor


@dataclass
class VideoCondition:
    """Everything a sample is conditioned on, beside the noisy latents and timesteps."""

    # Text already at the UNet's cross_attention_dim: (B, L, D) repeated per frame inside, or (B, T, L, D).
    text: Tensor | None = None
    # Image-only samples bypass every temporal layer (alpha forced to 1): bool or (B,) bool.
    image_only: bool | Tensor = False
    # Context frames (prediction / interpolation): clean latents (B, T, C, H, W) and mask (B, T) in {0, 1}.
    context_latents: Tensor | None = None
    context_mask: Tensor | None = None
    # Noise-augmentation level of the context latents, (B,) in [0, 1] (0 = clean), the drift remedy.
    context_noise_level: Tensor | None = None
    # Per-frame boxes: xyxy normalised to [0, 1] of the frame, (B, T, N, 4); classes (B, T, N) long
    # (index into the class vocabulary); instance_ids (B, T, N) long (stable across frames);
    # box_mask (B, T, N) bool (True = real box). Optional 3D boxes as corners (B, T, N, 8, 3) in the
    # camera frame (metres, nuScenes corner order), exactly as clips carry them; not encoded.
    boxes: Tensor | None = None
    box_classes: Tensor | None = None
    box_instance_ids: Tensor | None = None
    box_mask: Tensor | None = None
    boxes_3d: Tensor | None = None
    # Scene labels (B, 3) long: time of day, weather, crowdedness; -1 = unknown / dropped.
    labels: Tensor | None = None
    # Ego actions per frame: speed (B, T) m/s, yaw_rate (B, T) rad/s, waypoints (B, T, K, 2) m (ego frame).
    # NaN marks an unknown value (per value: frame, or single waypoint; CFG dropout uses it): zero is a
    # real, stopped ego.
    ego_speed: Tensor | None = None
    ego_yaw_rate: Tensor | None = None
    ego_waypoints: Tensor | None = None
    # Noise-augmentation level of a low-resolution input (upsampler), (B,) in [0, 1].
    noise_aug_level: Tensor | None = None
    # Cascade stage id (B,) long (e.g. interpolation pass 0 / 1), see drivesim.models.stages.
    stage_id: Tensor | None = None
    # A clean-latent guess of every frame (B, T, C, H, W) (the upsampler: its low-res frames upscaled and
    # encoded), blended into the output by the model's guess blend; not an input channel.
    guess: Tensor | None = None
    # Free slot for stage-specific extra input channels concatenated to the sample (upsampler low-res).
    extra: dict[str, Tensor] = field(default_factory=dict)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> VideoCondition:
        """Move every tensor; floating tensors also take `dtype` when given."""
        changes: dict[str, object] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Tensor):
                cast = dtype if (dtype is not None and value.is_floating_point()) else None
                changes[f.name] = value.to(device=device, dtype=cast)
            elif isinstance(value, dict):
                changes[f.name] = {k: v.to(device) for k, v in value.items()}
        return replace(self, **changes)  # type: ignore[arg-type]


@dataclass
class ConditionResiduals:
    """Additive terms the condition encoders hand to the VideoUNet's forward loop (all optional).

    All tensors are over folded frames, (B*T, ...), in the order `(b t)`.
    - `conv_in`: (B*T, C0, H, W), added to `conv_in`'s output (C0 = block_out_channels[0]).
    - `time_emb`: (B*T, E), added to the per-frame time embedding (E = time-embedding width).
    - `down_blocks`: one entry per down block i, (B*T, C_i, H / 2**i, W / 2**i) with
      C_i = block_out_channels[i], or None; added to the hidden states after the last resnet/attention
      of down block i, before its downsampler (so the skip connection carries it too).
    """

    conv_in: Tensor | None = None
    time_emb: Tensor | None = None
    down_blocks: list[Tensor | None] = field(default_factory=list)
