"""The `upsampler` stage: an x4 video upsampler in latent space (Video LDM section 3.4, latent variant).

The high-res clip's frames are encoded as they are (the target) and downscaled by `stage.upscale`
(kornia, antialiased): the low-res frames, as the cascade's will be. They enter (`stage.lowres_input`)
either upscaled back (bilinear) and encoded - a blurred guess of the target in the target's own latent
space, which a zero-init input path can pass through almost as it is - or as their own latents repeated
x`upscale` (nearest) onto the high-res latent grid, a code of another scale that the tiny model hardly
learnt to read in 4,000 steps (sessions 6-7: error with another clip's low-res frames only 6-12% higher).
The input is noise-augmented at a level drawn per sample in [0, `stage.noise_aug_max`] and enters through
the UNet's zero-init extra input channels; the level enters through the `noise_aug` embedding. With
`stage.guess_blend` the clean upscaled guess is also blended into the output by a learned strength per
noise level (`ContextBlend.blend_guess`), so the output follows the low-res frames from the first step. With
`stage.cache_latents=true` both encodings are made once per clip and cached packed (`pack_pair`):
encoding whole high-res frames is what a step costs otherwise (the tiny autoencoder: 0.37 s per
512x1024 frame on one thread, 16 frames a step), and whole frames, not crops, because the encoder's
GroupNorm makes a crop's latents differ from the frame's. Each
sample trains on one random patch of `model.latent_size` latents at the same place in every frame,
so the temporal layers learn to upsample neighbouring frames consistently; at generation the UNet
runs convolutionally on whole frames.
"""

from __future__ import annotations

from typing import Any

import kornia
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from drivesim.models.condition import VideoCondition
from drivesim.models.conditioning.context import augment_context
from drivesim.models.folding import fold_frames, unfold_frames
from drivesim.training.adapter import frames_to_unit
from drivesim.training.data import TrainBatch
from drivesim.training.diffusion_module import VAL_BUCKETS, DiffusionModule
from drivesim.training.randomness import per_sample

LOWRES_KEY = "lowres"
LOWRES_INPUTS = ("upscaled", "latents")


def upsampler_conditioning(embed_dim: int, guess_blend: bool = False) -> dict[str, Any]:
    """The upsampler's condition encoders: the noise-augmentation level (the low-res frames come in
    through the extra input channels) and, with `guess_blend`, the blend with the upscaled guess."""
    return {"context": False, "context_noise": False, "boxes": False, "labels": False, "ego": False,
            "noise_aug": True, "stage": False, "embed_dim": int(embed_dim), "guess_blend": bool(guess_blend),
            "dropout": {"context": 0.0, "boxes": 0.0, "labels": 0.0, "ego": 0.0, "text": 0.0}}


def check_lowres_input(mode: str) -> str:
    if mode not in LOWRES_INPUTS:
        raise ValueError(f"upsampler lowres_input {mode!r} must be one of {', '.join(LOWRES_INPUTS)}")
    return mode


def lowres_input(lowres: Tensor, upscale: int, mode: str = "latents") -> Tensor:
    """The encoded low-res input -> the high-res latent grid: `latents` (B, T, C, h, w) repeated x`upscale`
    (nearest); `upscaled` latents are on that grid already and pass as they are."""
    if check_lowres_input(mode) == "upscaled":
        return lowres
    t = lowres.shape[1]
    return unfold_frames(F.interpolate(fold_frames(lowres), scale_factor=upscale, mode="nearest"), t)


def encode_lowres(vae: Any, small: Tensor, upscale: int, mode: str) -> Tensor:
    """Low-res frames in [-1, 1] (B, T, 3, h, w) -> what the upsampler reads of them: `latents` their own
    latents (B, T, C, h/d, w/d); `upscaled` the latents of the frames upscaled x`upscale` (bilinear)."""
    if check_lowres_input(mode) == "upscaled":
        t = small.shape[1]
        big = F.interpolate(fold_frames(small), scale_factor=upscale, mode="bilinear", align_corners=False)
        small = unfold_frames(big.clamp(-1, 1), t)
    return vae.encode_video(small)


def encode_pair(vae: Any, frames: Tensor, upscale: int, mode: str = "latents") -> tuple[Tensor, Tensor]:
    """Frames in [-1, 1] (B, T, 3, H, W) -> (high-res latents (B, T, C, H/d, W/d), `encode_lowres` of the
    frames downscaled x`upscale` (kornia, antialiased))."""
    t = frames.shape[1]
    small = kornia.geometry.transform.rescale(fold_frames(frames), 1.0 / upscale, antialias=True)
    return vae.encode_video(frames), encode_lowres(vae, unfold_frames(small.clamp(-1, 1), t), upscale, mode)


def pack_pair(high: Tensor, low: Tensor, upscale: int) -> Tensor:
    """One cacheable tensor of the pair on the low-res grid: high-res latents space-to-depth x`upscale`
    (C*upscale^2 channels) then the low-res input, space-to-depth too where it is on the high-res grid:
    (B, T, C*(upscale^2 + 1), h, w) for `latents`, (B, T, 2*C*upscale^2, h, w) for `upscaled`."""
    def fold(x: Tensor) -> Tensor:
        return rearrange(x, "b t c (h p) (w q) -> b t (c p q) h w", p=upscale, q=upscale)

    return torch.cat([fold(high), fold(low) if low.shape[-2:] == high.shape[-2:] else low], dim=2)


def unpack_pair(packed: Tensor, upscale: int, mode: str = "latents") -> tuple[Tensor, Tensor]:
    """The inverse of `pack_pair` for the cache of `mode`."""
    per = upscale * upscale
    parts = 2 * per if check_lowres_input(mode) == "upscaled" else per + 1
    channels, rem = divmod(packed.shape[2], parts)
    if rem:
        raise ValueError(f"cached upsampler latents have {packed.shape[2]} channels, not a multiple of {parts} "
                         f"(lowres_input={mode}, upscale {upscale}); delete the cache")

    def unfold(x: Tensor) -> Tensor:
        return rearrange(x, "b t (c p q) h w -> b t c (h p) (w q)", p=upscale, q=upscale)

    split = channels * per
    low = packed[:, :, split:]
    return unfold(packed[:, :, :split]), unfold(low) if mode == "upscaled" else low


def upsampler_condition(lowres_up: Tensor, level: Tensor, noise: Tensor, guess: bool = False) -> VideoCondition:
    """The condition of the low-res input already on the high-res grid, augmented at `level` (B,) with
    `noise`; with `guess` (an `upscaled` input, a model with a guess blend) also the clean input as the guess."""
    mask = torch.ones(lowres_up.shape[:2], device=lowres_up.device)
    augmented = augment_context(lowres_up, mask, level.to(lowres_up.device), noise=noise)
    return VideoCondition(noise_aug_level=level.to(lowres_up.device), extra={LOWRES_KEY: augmented},
                          guess=lowres_up if guess else None)


def crop_latents(x: Tensor, offsets: Tensor, patch: tuple[int, int]) -> Tensor:
    """(B, T, C, H, W) -> (B, T, C, ph, pw) at per-sample offsets (B, 2) in [0, 1), same place every frame."""
    ph, pw = patch
    h, w = x.shape[-2:]
    out = []
    for sample, (u, v) in zip(x, offsets.tolist()):
        y, z = int(u * (h - ph + 1)), int(v * (w - pw + 1))
        out.append(sample[..., y : y + ph, z : z + pw])
    return torch.stack(out)


class UpsamplerModule(DiffusionModule):
    """DiffusionModule whose inputs are (high-res patch, augmented low-res patch); every frame is denoised."""

    def __init__(self, *args: Any, patch: tuple[int, int], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.patch = patch
        self.upscale = int(self.stage_cfg.upscale)
        self.noise_aug_max = float(self.stage_cfg.noise_aug_max)
        self.lowres_mode = check_lowres_input(str(self.stage_cfg.get("lowres_input", "latents")))
        self.guess_blend = getattr(self.unet.condition_encoders, "guess_blend", None) is not None

    @torch.no_grad()
    def encoded_pair(self, batch: TrainBatch) -> tuple[Tensor, Tensor]:
        """(high-res latents, low-res latents on the high-res grid), both (B, T, C, H/8, W/8) for SD."""
        if batch.latents is not None:  # cached by build_train_data with `pack_pair`
            high, low = unpack_pair(batch.latents.to(self.device), self.upscale, self.lowres_mode)
        else:
            if self.vae is None:
                raise RuntimeError("the upsampler needs the autoencoder (model.vae)")
            high, low = encode_pair(self.vae, frames_to_unit(batch.clips.frames).to(self.device), self.upscale,
                                    self.lowres_mode)
        return high, lowres_input(low, self.upscale, self.lowres_mode)

    def inputs(self, batch: TrainBatch, generators: list[torch.Generator],
               timesteps: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, VideoCondition]:
        """(high-res patch latents, timesteps (B, T), noise, condition); one fixed order of per-sample draws."""
        high, low_up = self.encoded_pair(batch)
        b, t = high.shape[:2]
        offsets = per_sample(generators, "rand", (2,))
        steps = per_sample(generators, "randint", (), high=self.objective.num_train_timesteps)
        level = per_sample(generators, "rand", ()) * self.noise_aug_max
        target = crop_latents(high, offsets, self.patch)
        low = crop_latents(low_up, offsets, self.patch)
        noise = per_sample(generators, "randn", tuple(target.shape[1:])).to(target.device, target.dtype)
        aug = per_sample(generators, "randn", tuple(low.shape[1:])).to(low.device, low.dtype)
        cond = upsampler_condition(low, level, aug, guess=self.guess_blend)
        if self.prompts is not None:
            from dataclasses import replace

            cond = replace(cond, text=self.prompts([s.description for s in batch.clips.sources]).to(self.device))
        chosen = steps[:, None].expand(b, t) if timesteps is None else timesteps
        return target, chosen.to(target.device), noise, cond

    def losses(self, batch: TrainBatch, generators: list[torch.Generator]) -> dict[str, Tensor]:
        target, timesteps, noise, cond = self.inputs(batch, generators)
        mask = torch.ones(target.shape[:2], device=target.device)
        return {"loss": self.diffusion_loss(target, timesteps, noise, cond, mask)}

    def validation_step(self, batch: TrainBatch, batch_idx: int) -> None:
        if len(batch) == 0:
            return
        target, _, noise, cond = self.inputs(batch, self.generators(batch, stream="val"))
        mask = torch.ones(target.shape[:2], device=target.device)
        n = self.objective.num_train_timesteps
        with self.ema_weights():
            for k in range(VAL_BUCKETS):
                steps = torch.full(target.shape[:2], int((k + 0.5) * n / VAL_BUCKETS), device=target.device)
                loss = self.diffusion_loss(target, steps, noise, cond, mask)
                lo, hi = k * n // VAL_BUCKETS, (k + 1) * n // VAL_BUCKETS
                self.log(f"val/loss_t{lo}-{hi}", loss, batch_size=len(batch), sync_dist=True)

    def example_condition(self, batch: TrainBatch) -> tuple[Tensor, VideoCondition]:
        target, _, _, cond = self.inputs(batch, self.generators(batch, stream="sample"))
        return target, cond
