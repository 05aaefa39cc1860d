"""Context frames (prediction / interpolation): clean latents + mask -> a residual added to conv_in.

The convolutions are bias-free, so a frame whose mask is 0 (its latents are multiplied by the mask)
gives exactly zero: a sample with S = 0 context frames is the unconditional model, as CFG on context
needs (DESIGN.md section 1). The noise-augmentation helpers implement the drift remedy of GameNGen:
train on noised context and tell the model how much noise it carries.

With `reference=True` every frame also receives its nearest given frames before and after it (each
with a validity channel), spatially aligned at its own position. Without it only the given frames
carry the context and the temporal layers must move it to the others: the tiny demo model trained
that way did not learn to (session 7: teacher-forced denoising error of the predicted frames with
two context frames vs none, ratio 0.99-1.00 at every noise level; its rollouts do not continue
the replayed scene). The reference inputs have their own convolution, so an export without it is a
valid parent (its keys start at init; the zero-init output keeps the model unchanged).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from drivesim.models.conditioning.embeddings import zero_init


class ContextEncoder(nn.Module):
    """(B*T, C + 1, H, W) masked latents and mask -> (B*T, C0, H, W), zero at init."""

    def __init__(self, latent_channels: int, out_channels: int, reference: bool = False) -> None:
        super().__init__()
        self.latent_channels = latent_channels
        self.conv = nn.Conv2d(latent_channels + 1, out_channels, 3, padding=1, bias=False)
        self.reference = (nn.Conv2d(2 * (latent_channels + 1), out_channels, 3, padding=1, bias=False)
                          if reference else None)
        self.act = nn.SiLU()
        self.conv_out = zero_init(nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False))

    def forward(self, latents: Tensor, mask: Tensor) -> Tensor:
        """`latents` (B, T, C, H, W), `mask` (B, T) in {0, 1} -> (B*T, C0, H, W) in `(b t)` order."""
        b, t, c, h, w = latents.shape
        latents = latents.to(self.conv.weight.dtype)
        x = _masked(latents, mask.to(latents.dtype))
        hidden = self.conv(x)
        if self.reference is not None:
            before, valid_before, after, valid_after = nearest_given(latents, mask)
            hidden = hidden + self.reference(torch.cat([_masked(before, valid_before), _masked(after, valid_after)], 1))
        return self.conv_out(self.act(hidden))


def _masked(latents: Tensor, mask: Tensor) -> Tensor:
    """(B, T, C, H, W) latents and (B, T) mask -> (B*T, C + 1, H, W): latents x mask, then the mask plane."""
    b, t, c, h, w = latents.shape
    m = mask.to(latents.dtype).reshape(b * t, 1, 1, 1).expand(b * t, 1, h, w)
    return torch.cat([latents.reshape(b * t, c, h, w) * m, m], dim=1)


def nearest_given_index(mask: Tensor) -> tuple[Tensor, Tensor]:
    """(B, T) mask -> for each frame the index of the nearest given frame at or before it (-1: none)
    and at or after it (T: none), (B, T) each; a given frame is its own."""
    b, t = mask.shape
    index = torch.arange(t, device=mask.device).expand(b, t)
    given = mask.to(torch.bool)
    before = torch.cummax(torch.where(given, index, torch.full_like(index, -1)), dim=1).values
    after = torch.cummin(torch.where(given, index, torch.full_like(index, t)).flip(1), dim=1).values.flip(1)
    return before, after


def gather_frames(latents: Tensor, at: Tensor) -> Tensor:
    """latents (B, T, C, H, W) at per-frame indices (B, T) clamped to [0, T - 1] -> (B, T, C, H, W)."""
    b, t = at.shape
    picked = at.clamp(0, latents.shape[1] - 1).reshape(b, t, 1, 1, 1).expand(b, t, *latents.shape[2:])
    return torch.gather(latents, 1, picked)


def nearest_given(latents: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """For each frame, the latents of the nearest given frame at or before it and at or after it
    (B, T, C, H, W each) and whether there is one ((B, T) in {0, 1}); a given frame is its own."""
    before, after = nearest_given_index(mask)
    dtype = latents.dtype
    return (gather_frames(latents, before), (before >= 0).to(dtype),
            gather_frames(latents, after), (after < mask.shape[1]).to(dtype))


def context_guess(latents: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Each frame's guess from the given frames and its distance to the nearest one, (B, T, C, H, W) and
    (B, T): between two given frames their blend by distance, after (before) all of them the last (first)
    one; a given frame is its own guess at distance 0. A sample without given frames gets zeros and
    distance 0 (nothing to guess from)."""
    before, after = nearest_given_index(mask)
    t = mask.shape[1]
    has_before, has_after = before >= 0, after < t
    lo = torch.where(has_before, before, after)
    hi = torch.where(has_after, after, before)
    index = torch.arange(t, device=mask.device).expand_as(lo)
    dtype = latents.dtype
    w = ((index - lo).to(dtype) / (hi - lo).clamp_min(1).to(dtype)).clamp(0, 1)[..., None, None, None]
    guess = (1 - w) * gather_frames(latents, lo) + w * gather_frames(latents, hi)
    big = torch.full_like(index, t + 1)
    distance = torch.minimum(torch.where(has_before, index - before, big), torch.where(has_after, after - index, big))
    distance = torch.where(has_before | has_after, distance, torch.zeros_like(distance))
    return guess * (has_before | has_after).to(dtype)[..., None, None, None], distance


def given_anchor(latents: Tensor, mask: Tensor) -> Tensor:
    """Each frame's nearest given frame at or before it, zeros where there is none (B, T, C, H, W): the
    point a `stage.anchor_to_given` model denoises the difference to (a given frame is its own anchor)."""
    before, _ = nearest_given_index(mask)
    return gather_frames(latents, before) * (before >= 0).to(latents.dtype)[..., None, None, None]


def augment_context(latents: Tensor, mask: Tensor, level: Tensor,
                    generator: torch.Generator | None = None, noise: Tensor | None = None) -> Tensor:
    """Noise the context frames at `level` (B,) in [0, 1]: cos(l pi/2) z + sin(l pi/2) eps.

    Variance-preserving, so level 0 is the clean latent and level 1 pure noise (`noise` gives the
    draw itself, else `generator` draws it); frames outside the mask are returned unchanged (they are masked out by the encoder anyway).
    """
    if level.shape != latents.shape[:1]:
        raise ValueError(f"context_noise_level must be (B,) = {tuple(latents.shape[:1])}, got {tuple(level.shape)}")
    if level.min() < 0 or level.max() > 1:
        raise ValueError("context_noise_level must lie in [0, 1]")
    eps = noise if noise is not None else torch.randn(latents.shape, generator=generator, device=latents.device,
                                                      dtype=latents.dtype)
    angle = level.to(latents.dtype).reshape(-1, 1, 1, 1, 1) * (math.pi / 2)
    noised = torch.cos(angle) * latents + torch.sin(angle) * eps
    m = mask.to(torch.bool).reshape(*mask.shape, 1, 1, 1)
    return torch.where(m, noised, latents)


def sample_context_noise_level(batch: int, max_level: float, generator: torch.Generator | None = None,
                               device: torch.device | str = "cpu") -> Tensor:
    """Training draw of the context noise level, uniform in [0, max_level] per sample."""
    if not 0.0 <= max_level <= 1.0:
        raise ValueError(f"max_level must lie in [0, 1], got {max_level}")
    return torch.rand(batch, generator=generator, device=device) * max_level


def sample_context_mask(batch: int, frames: int, choices: tuple[int, ...] = (0, 1, 2),
                        generator: torch.Generator | None = None) -> Tensor:
    """Prediction-model training mask (B, T): the first S frames are context, S drawn per sample.

    S = 0 trains the unconditional model that CFG on context needs (Video LDM uses S in {0, 1, 2}).
    """
    if not choices or min(choices) < 0 or max(choices) > frames:
        raise ValueError(f"context frame counts {choices} must lie in [0, {frames}]")
    counts = torch.tensor(choices)[torch.randint(len(choices), (batch,), generator=generator)]
    return (torch.arange(frames)[None, :] < counts[:, None]).float()
