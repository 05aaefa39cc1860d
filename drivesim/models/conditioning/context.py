"""Context frames (prediction / interpolation): clean latents + mask -> a residual added to conv_in.

The convolutions are bias-free, so a frame whose mask is 0 (its latents are multiplied by the mask)
gives exactly zero: a sample with S = 0 context frames is the unconditional model, as CFG on context
needs (DESIGN.md section 1). The noise-augmentation helpers implement the drift remedy of GameNGen:
train on noised context and tell the model how much noise it carries.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from drivesim.models.conditioning.embeddings import zero_init


class ContextEncoder(nn.Module):
    """(B*T, C + 1, H, W) masked latents and mask -> (B*T, C0, H, W), zero at init."""

    def __init__(self, latent_channels: int, out_channels: int) -> None:
        super().__init__()
        self.latent_channels = latent_channels
        self.conv = nn.Conv2d(latent_channels + 1, out_channels, 3, padding=1, bias=False)
        self.act = nn.SiLU()
        self.conv_out = zero_init(nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False))

    def forward(self, latents: Tensor, mask: Tensor) -> Tensor:
        """`latents` (B, T, C, H, W), `mask` (B, T) in {0, 1} -> (B*T, C0, H, W) in `(b t)` order."""
        b, t, c, h, w = latents.shape
        latents = latents.to(self.conv.weight.dtype)
        m = mask.to(latents.dtype).reshape(b * t, 1, 1, 1).expand(b * t, 1, h, w)
        x = torch.cat([latents.reshape(b * t, c, h, w) * m, m], dim=1)
        return self.conv_out(self.act(self.conv(x)))


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
