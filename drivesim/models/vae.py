"""The VAE of the latent video model: diffusers `AutoencoderKL` over `(B, T, 3, H, W)` videos.

Frames are folded into the batch and encoded / decoded in chunks (memory stays bounded by the chunk,
not the clip length); latents are scaled by the VAE's own `scaling_factor` (and `shift_factor`
where the config has one). With `temporal_decoder=True`, decoding goes through `TemporalDecoder`,
chunked over time per video so its 3D convolutions see consecutive frames.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL
from torch import Tensor, nn

from drivesim.models.folding import fold_frames, unfold_frames
from drivesim.models.temporal_decoder import TemporalDecoder

log = logging.getLogger(__name__)


def resolve_vae_folder(path: str | Path) -> Path:
    """A diffusers AutoencoderKL folder, or a pipeline folder's `vae/`; anything else is a clear error."""
    path = Path(path)
    if (path / "vae" / "config.json").is_file():
        return path / "vae"
    if (path / "config.json").is_file():
        return path
    if path.is_file():
        raise ValueError(f"{path}: give a diffusers VAE folder or SD pipeline folder, not a single file")
    raise FileNotFoundError(f"{path} is neither a diffusers VAE folder nor a pipeline folder with vae/")


class VideoVAE(nn.Module):
    """`encode_video` / `decode_video` over `(B, T, C, H, W)`; images in [-1, 1], latents scaled."""

    def __init__(self, vae: AutoencoderKL, temporal_decoder: bool = False, blend_init_logit: float = 0.5,
                 temporal_padding: str = "replicate") -> None:
        super().__init__()
        self.vae: Any = vae  # diffusers is untyped for mypy
        self.temporal_decoder = (TemporalDecoder(vae, blend_init_logit, padding=temporal_padding)
                                 if temporal_decoder else None)

    @classmethod
    def from_pretrained(cls, path: str | Path, temporal_decoder: bool = False,
                        torch_dtype: torch.dtype | None = None, temporal_padding: str = "replicate") -> VideoVAE:
        folder = resolve_vae_folder(path)
        vae = AutoencoderKL.from_pretrained(folder, local_files_only=True, torch_dtype=torch_dtype)
        log.info("VAE from %s (scaling factor %s)", folder, vae.config.scaling_factor)
        return cls(vae.eval(), temporal_decoder=temporal_decoder, temporal_padding=temporal_padding)

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)

    @property
    def shift_factor(self) -> float:
        return float(self.vae.config.get("shift_factor") or 0.0)

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    @property
    def downscale(self) -> int:
        """Pixels per latent pixel: 2 per down block after the first (8 for SD)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def encode_video(self, frames: Tensor, chunk_size: int = 8, sample: bool = False,
                     generator: torch.Generator | None = None) -> Tensor:
        """frames (B, T, 3, H, W) in [-1, 1] -> scaled latents (B, T, C, h, w).

        The posterior mean by default; `sample=True` draws once for the whole clip (after the chunked
        encoder passes), so the result does not depend on `chunk_size`.
        """
        in_ch = int(self.vae.config.in_channels)
        if frames.ndim != 5 or frames.shape[2] != in_ch:
            raise ValueError(f"frames must be (B, T, {in_ch}, H, W), got {tuple(frames.shape)}")
        if not frames.is_floating_point():
            raise ValueError(f"frames must be float in [-1, 1], got {frames.dtype} (convert uint8 first)")
        if frames.numel() and (frames.amin() < -1.5 or frames.amax() > 1.5):
            raise ValueError(f"frames must lie in [-1, 1], got [{float(frames.amin()):.3g}, {float(frames.amax()):.3g}]")
        _check_chunk(chunk_size)
        num_frames = frames.shape[1]
        x = fold_frames(frames).to(self.vae.dtype)
        means, stds = [], []
        for part in x.split(chunk_size):
            posterior = self.vae.encode(part).latent_dist
            means.append(posterior.mean)
            stds.append(posterior.std)
        z = torch.cat(means)
        if sample:
            noise = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
            z = z + torch.cat(stds) * noise
        return unfold_frames((z - self.shift_factor) * self.scaling_factor, num_frames)

    def decode_video(self, latents: Tensor, decode_chunk_size: int = 8) -> Tensor:
        """Scaled latents (B, T, C, h, w) -> frames (B, T, 3, H, W), nominally in [-1, 1] (unclamped).

        The image decoder takes `decode_chunk_size` folded frames at a time; the temporal decoder
        takes `decode_chunk_size` consecutive frames of every video at a time.
        """
        if latents.ndim != 5 or latents.shape[2] != self.latent_channels:
            raise ValueError(f"latents must be (B, T, {self.latent_channels}, h, w), got {tuple(latents.shape)}")
        _check_chunk(decode_chunk_size)
        z = latents.to(self.vae.dtype) / self.scaling_factor + self.shift_factor
        num_frames = z.shape[1]
        if self.temporal_decoder is None:
            # oneDNN convolutions run faster on channels-last input on CPU (the weights are left as they are:
            # safetensors saves contiguous tensors only)
            fmt = torch.channels_last if z.device.type == "cpu" else torch.contiguous_format
            parts = [self.vae.decode(p.contiguous(memory_format=fmt)).sample.contiguous()
                     for p in fold_frames(z).split(decode_chunk_size)]
            return unfold_frames(torch.cat(parts), num_frames)
        chunks = []
        for part in z.split(decode_chunk_size, dim=1):
            n = part.shape[1]
            chunks.append(unfold_frames(self.temporal_decoder(fold_frames(part), n), n))
        return torch.cat(chunks, dim=1)


def _check_chunk(chunk: int) -> None:
    if int(chunk) < 1:
        raise ValueError(f"chunk size must be >= 1, got {chunk}")
