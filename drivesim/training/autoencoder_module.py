"""The `autoencoder` stage: a small diffusers `AutoencoderKL` trained from scratch on frames.

The embedded default has no SD VAE, so drivesim trains its own: L1 + SSIM (kornia) + a small KL on
frames (full frames by default: DESIGN.md section 6 found crops turned nights grey), with random
crops as an option. The decoder is kept small so that decoding stays cheap at generation time.
"""

from __future__ import annotations

from typing import Any, cast

import kornia
import torch
from diffusers import AutoencoderKL
from torch import Tensor, nn

from drivesim.models.folding import fold_frames
from drivesim.training.adapter import frames_to_unit
from drivesim.training.base import StageModule
from drivesim.training.data import TrainBatch
from drivesim.training.randomness import per_sample


def build_autoencoder(kwargs: dict[str, Any]) -> AutoencoderKL:
    if not kwargs:
        raise ValueError("model.autoencoder is empty: give the AutoencoderKL architecture to train")
    try:
        return AutoencoderKL(**kwargs)
    except TypeError as exc:
        raise ValueError(f"model.autoencoder: not an AutoencoderKL config ({exc})") from exc


def random_crops(frames: Tensor, patch: tuple[int, int] | None, offsets: Tensor) -> Tensor:
    """(N, 3, H, W) -> (N, 3, ph, pw) at per-frame offsets in [0, 1) (drawn from the sample generators)."""
    if patch is None:
        return frames
    ph, pw = patch
    h, w = frames.shape[-2:]
    if ph > h or pw > w:
        raise ValueError(f"stage.patch {patch} is larger than the frames ({h}, {w})")
    out = []
    for frame, (u, v) in zip(frames, offsets.tolist()):
        y, x = int(u * (h - ph + 1)), int(v * (w - pw + 1))
        out.append(frame[:, y : y + ph, x : x + pw])
    return torch.stack(out)


def recolour(x: Tensor, draws: Tensor, probability: float, saturation_max: float) -> Tensor:
    """Frames in [-1, 1] with their hue rotated and saturation raised (kornia), each with `probability`.
    `draws` (N, 3) uniform in [0, 1): whether, the hue angle, the saturation factor."""
    unit = (x + 1) / 2
    hue = (draws[:, 1] * 2 - 1) * torch.pi
    saturation = 1 + draws[:, 2] * (saturation_max - 1)
    moved = kornia.enhance.adjust_saturation(kornia.enhance.adjust_hue(unit, hue), saturation).clamp(0, 1)
    pick = (draws[:, 0] < probability).view(-1, 1, 1, 1)
    return torch.where(pick, moved * 2 - 1, x)


PATCHES_PER_FRAME = 4
PATCH_DRAWS = 2 + PATCHES_PER_FRAME * 7  # whether, how many, then per patch (h, w, y, x, hue, saturation, value)


def paste_colour_patches(x: Tensor, draws: Tensor, probability: float, size_range: tuple[int, int]) -> Tensor:
    """Frames in [-1, 1] with 1-4 flat rectangles of random, saturated colour pasted on each, with `probability`.

    Hue rotation alone recolours whole frames; a world whose objects share a few colours still lets the
    encoder drop the colour of small regions. Rectangles of any hue at object scale make the latents carry
    it (issue 12: a magenta car decoded grey). `draws` (N, PATCH_DRAWS) uniform in [0, 1).
    """
    out = x.clone()
    h, w = x.shape[-2:]
    lo, hi = size_range
    for n, row in enumerate(draws.tolist()):
        if row[0] >= probability:
            continue
        for k in range(1 + int(row[1] * PATCHES_PER_FRAME)):
            ph_, pw_, py, px, hue, sat, val = row[2 + 7 * k : 9 + 7 * k]
            ph, pw = min(h, lo + int(ph_ * (hi - lo + 1))), min(w, lo + int(pw_ * (hi - lo + 1)))
            y, x0 = int(py * (h - ph + 1)), int(px * (w - pw + 1))
            hsv = torch.tensor([hue * 2 * torch.pi, 0.5 + 0.5 * sat, 0.35 + 0.65 * val]).view(1, 3, 1, 1)
            rgb = kornia.color.hsv_to_rgb(hsv).view(3, 1, 1).to(x)
            out[n, :, y : y + ph, x0 : x0 + pw] = rgb * 2 - 1
    return out


def chroma_l1(recon: Tensor, x: Tensor) -> Tensor:
    """L1 of the YCbCr chroma planes (frames in [-1, 1]): colour errors weigh beside brightness errors."""
    def chroma(v: Tensor) -> Tensor:
        return kornia.color.rgb_to_ycbcr((v.clamp(-1, 1) + 1) / 2)[:, 1:]

    return (chroma(recon) - chroma(x)).abs().mean()


def check_colour_options(stage_cfg: Any) -> None:
    """Refuse out-of-range colour options before anything runs (resolve() calls it: one line, exit 2)."""
    from drivesim.training.resolve import TrainConfigError

    for key in ("colour_augment", "colour_patches"):
        if not 0.0 <= float(stage_cfg[key]) <= 1.0:
            raise TrainConfigError(f"stage.{key} is a probability in [0, 1], got {stage_cfg[key]}")
    sizes = list(stage_cfg.colour_patch_size)
    if len(sizes) != 2 or not 1 <= int(sizes[0]) <= int(sizes[1]):
        raise TrainConfigError(f"stage.colour_patch_size must be [min, max] pixels with 1 <= min <= max, got {sizes}")
    if float(stage_cfg.chroma_weight) < 0:
        raise TrainConfigError(f"stage.chroma_weight must be >= 0, got {stage_cfg.chroma_weight}")


class AutoencoderModule(StageModule):
    def __init__(self, autoencoder: AutoencoderKL, stage_cfg: Any, trainer_cfg: Any, seed: int) -> None:
        super().__init__(trainer_cfg, seed)
        self.autoencoder: Any = cast(Any, autoencoder)  # diffusers is untyped for mypy
        self.stage_cfg = stage_cfg
        self.patch = (int(stage_cfg.patch[0]), int(stage_cfg.patch[1])) if stage_cfg.patch else None
        if bool(trainer_cfg.gradient_checkpointing):
            self.autoencoder.enable_gradient_checkpointing()
        self.setup_ema()

    def trainable(self) -> list[nn.Parameter]:
        return [p for p in self.autoencoder.parameters() if p.requires_grad]

    def reconstruct(self, x: Tensor, noise: Tensor | None) -> tuple[Tensor, Tensor]:
        """Frames in [-1, 1] -> (reconstruction, KL per frame); `noise` samples the posterior."""
        posterior = self.autoencoder.encode(x).latent_dist
        z = posterior.mean if noise is None else posterior.mean + posterior.std * noise
        return self.autoencoder.decode(z).sample, posterior.kl()

    def _terms(self, batch: TrainBatch, generators: list[torch.Generator]) -> dict[str, Tensor]:
        frames = batch.clips.frames
        t = frames.shape[1]
        offsets = per_sample(generators, "rand", (t, 2)).reshape(-1, 2)
        x = random_crops(frames_to_unit(fold_frames(frames)), self.patch, offsets).to(self.device)
        if float(self.stage_cfg.colour_augment) > 0:
            draws = per_sample(generators, "rand", (t, 3)).reshape(-1, 3).to(self.device)
            x = recolour(x, draws, float(self.stage_cfg.colour_augment), float(self.stage_cfg.colour_saturation_max))
        if float(self.stage_cfg.colour_patches) > 0:
            draws = per_sample(generators, "rand", (t, PATCH_DRAWS)).reshape(-1, PATCH_DRAWS)
            sizes = self.stage_cfg.colour_patch_size
            x = paste_colour_patches(x, draws, float(self.stage_cfg.colour_patches), (int(sizes[0]), int(sizes[1])))
        latent_shape = self.autoencoder.encode(x[:1]).latent_dist.mean.shape[1:]
        noise = per_sample(generators, "randn", (t, *latent_shape)).reshape(-1, *latent_shape).to(self.device)
        recon, kl = self.reconstruct(x, noise)
        l1 = (recon - x).abs().mean()
        ssim = kornia.losses.ssim_loss((recon.clamp(-1, 1) + 1) / 2, (x + 1) / 2, window_size=7)
        kl_term = kl.mean() / x[0].numel()
        total = l1 + float(self.stage_cfg.ssim_weight) * ssim + float(self.stage_cfg.kl_weight) * kl_term
        terms = {"l1": l1, "ssim": ssim, "kl": kl_term}
        if float(self.stage_cfg.chroma_weight) > 0:
            terms["chroma"] = chroma_l1(recon, x)
            total = total + float(self.stage_cfg.chroma_weight) * terms["chroma"]
        return {"loss": total, **terms}

    def losses(self, batch: TrainBatch, generators: list[torch.Generator]) -> dict[str, Tensor]:
        return self._terms(batch, generators)

    def validation_step(self, batch: TrainBatch, batch_idx: int) -> None:
        if len(batch) == 0:
            return
        with self.ema_weights(), torch.no_grad():
            x = frames_to_unit(fold_frames(batch.clips.frames)).to(self.device)
            recon, _ = self.reconstruct(x, None)
            mse = ((recon.clamp(-1, 1) - x) ** 2).mean(dim=(1, 2, 3)) / 4  # in [0, 1] units
            psnr = (10 * torch.log10(1.0 / mse.clamp_min(1e-10))).mean()
        self.log("val/psnr", psnr, batch_size=len(batch), sync_dist=True)
        self.log("val/l1", (recon - x).abs().mean(), batch_size=len(batch), sync_dist=True)
