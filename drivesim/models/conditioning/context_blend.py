"""A learned blend of the model's output with the output that "the given frames are the answer" implies.

Why: the tiny prediction model never learnt to read its context through the UNet (sessions 7-9:
teacher-forced error with two context frames over none 0.99 at every noise level), although a copy
of the last given frame is a 3x better guess of the clean frame than the data mean. Where the noisy
frame says little (high t), the best clean-frame estimate is mostly that copy; the UNet would have
to learn a tiny, exact linear pass-through to produce it. This module makes it one learned scalar
per (noise-level bucket, distance to the nearest given frame):

    out' = out + s[t, d] * (implied(guess) - out)

where `guess` is the given frame nearest before / after each frame (blended by distance when both
exist, as `context_guess` says) and `implied` is the model output (eps, v or x0) whose clean frame is
exactly the guess at this noisy sample and timestep: the clean-frame estimate becomes
(1 - s) * the model's + s * the guess. With s = 0 (the init) the model is unchanged; frames with no
given frame (S = 0, context dropped for CFG) and the given frames themselves are never blended, so the
unconditional branch is the plain model. Least squares on the shipped tiny model's outputs gives
s ~ 0.85 at t = 900 and ~ 0.05 at t = 100, and the teacher-forced error ratio 0.99 -> 0.35 at t = 900
(session 10); training learns the table (its own learning rate: `stage.context_blend_lr`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from drivesim.models.conditioning.context import context_guess

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


class ContextBlend(nn.Module):
    """s[bucket(t), distance] (zero-init) and the noise schedule it needs to express a guess as an output."""

    def __init__(self, buckets: int, distances: int) -> None:
        super().__init__()
        if buckets < 1 or distances < 1:
            raise ValueError(f"context_blend_buckets and context_blend_distances must be >= 1, got {buckets}, {distances}")
        self.weight = nn.Parameter(torch.zeros(buckets, distances))
        # The schedule is the model's (noise_schedule, prediction_type), not a weight: set after building. A plain
        # float64 attribute, not a buffer, so that `.to(dtype=bfloat16)` cannot round 1 - alpha_bar(0) to zero.
        self.alphas_cumprod = torch.empty(0, dtype=torch.float64)
        self.prediction_type = ""

    def set_schedule(self, alphas_cumprod: Tensor, prediction_type: str) -> None:
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"context blend: prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
        self.alphas_cumprod = alphas_cumprod.detach().to("cpu", torch.float64)
        self.prediction_type = prediction_type

    def _alphas(self, device: torch.device) -> Tensor:
        if self.alphas_cumprod.device != device:
            self.alphas_cumprod = self.alphas_cumprod.to(device)
        return self.alphas_cumprod

    def strength(self, timesteps: Tensor, distance: Tensor) -> Tensor:
        """s for per-frame timesteps (B, T) and distances (B, T) (0: a given frame, never blended)."""
        n = self.alphas_cumprod.numel()
        buckets, distances = self.weight.shape
        bucket = (timesteps.long().clamp(0, n - 1) * buckets) // n
        d = distance.long().clamp(min=1, max=distances) - 1
        return self.weight[bucket, d] * (distance > 0).to(self.weight.dtype)

    def forward(self, out: Tensor, sample: Tensor, timesteps: Tensor, context: Tensor, mask: Tensor) -> Tensor:
        """`out`, `sample`, `context` (B, T, C, H, W); `timesteps`, `mask` (B, T) -> the blended output."""
        guess, distance = context_guess(context, mask)
        return self._mix(out, sample, timesteps, guess, distance)

    def blend_guess(self, out: Tensor, sample: Tensor, timesteps: Tensor, guess: Tensor) -> Tensor:
        """Blend every frame with a clean-frame `guess` (B, T, C, H, W) of its own (the upsampler's
        upscaled low-res frame): s[bucket(t), 0] for all frames."""
        if guess.shape != out.shape:
            raise ValueError(f"guess blend: guess {tuple(guess.shape)} must match the output {tuple(out.shape)}")
        return self._mix(out, sample, timesteps, guess, torch.ones_like(timesteps))

    def _mix(self, out: Tensor, sample: Tensor, timesteps: Tensor, guess: Tensor, distance: Tensor) -> Tensor:
        if self.alphas_cumprod.numel() == 0:
            raise RuntimeError("ContextBlend has no noise schedule: call set_schedule (drivesim.models.build does)")
        s = self.strength(timesteps, distance)
        if not bool((s != 0).any()) and not (torch.is_grad_enabled() and self.weight.requires_grad):
            return out  # nothing to blend (the gradient still reaches a zero table in training)
        alphas = self._alphas(timesteps.device)
        ab = alphas[timesteps.long().clamp(0, alphas.numel() - 1)][..., None, None, None]
        implied = implied_output(sample.float(), guess.float(), ab, self.prediction_type)
        strength = s.float()[..., None, None, None]
        blended = out.float() + strength * (implied - out.float())
        blendable = (distance > 0)[..., None, None, None]  # not `strength != 0`: the gradient must reach a zero table
        return torch.where(blendable, blended, out.float()).to(out.dtype)  # given / context-free frames stay exact


def implied_output(sample: Tensor, guess: Tensor, alpha_bar: Tensor, prediction_type: str) -> Tensor:
    """The model output (eps, v or x0) whose clean frame is exactly `guess` at the noisy `sample`;
    `alpha_bar` (the schedule's cumulative alpha at each frame's timestep) broadcasts against both."""
    if prediction_type == "sample":
        return guess
    a, sigma = alpha_bar.sqrt().float(), (1 - alpha_bar).sqrt().float()
    eps = (sample - a * guess) / sigma
    return eps if prediction_type == "epsilon" else a * eps - sigma * guess


def attach_schedule(unet: Any, schedule: dict[str, Any], prediction_type: str) -> None:
    """Give a UNet's context blend (if it has one) the model's noise schedule; no-op otherwise."""
    encoders = getattr(unet, "condition_encoders", None)
    blends = [b for b in (getattr(encoders, "blend", None), getattr(encoders, "guess_blend", None)) if b is not None]
    if not blends:
        return
    from diffusers import DDPMScheduler

    kwargs = {k: v for k, v in schedule.items() if not str(k).startswith("_") and k != "prediction_type"}
    scheduler: Any = DDPMScheduler(**kwargs)
    for blend in blends:
        blend.set_schedule(scheduler.alphas_cumprod, prediction_type)
