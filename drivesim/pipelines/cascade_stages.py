"""The later cascade stages at generation: checks and loading of upsampler, decoder and LoRA exports."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from drivesim.exports import LORA_FILE, Export, ExportError, folder_digest
from drivesim.models import VideoUNet
from drivesim.pipelines.engine import SamplerSettings

log = logging.getLogger(__name__)


class CascadeStageError(ExportError):
    """An upsampler / decoder / lora export that does not fit the cascade (one line)."""


def check_same_autoencoder(export: Export, prediction: Export, key: str) -> None:
    """`export` must work in the latent space of the cascade's autoencoder."""
    mine, theirs = Path(export.autoencoder_path()).resolve(), Path(prediction.autoencoder_path()).resolve()
    if mine != theirs and folder_digest(mine) != folder_digest(theirs):
        raise CascadeStageError(f"{key}={export.path}: trained with the autoencoder {mine}, but the cascade's latents "
                                f"come from {theirs}")


def apply_lora(unet: VideoUNet, export: Export, lora: Export | None, required: bool) -> VideoUNet:
    """Merge the lora export's adapters into `unet`'s spatial attention (the DreamBooth swap): the
    personalised spatial weights under `export`'s own temporal layers. Only onto the same spatial
    architecture; a mismatch is an error for the prediction model (`required`), a warning otherwise."""
    if lora is None:
        return unet
    if lora.spatial_hash != export.spatial_hash:
        message = (f"lora={lora.path}: trained on a spatial architecture ({lora.spatial_hash}) other than "
                   f"{export.path}'s ({export.spatial_hash})")
        if required:
            raise CascadeStageError(message)
        log.warning("%s: left without the LoRA", message)
        return unet
    from drivesim.models.lora import load_lora, merge_lora

    try:
        load_lora(unet, lora.path / LORA_FILE)
    except (KeyError, ValueError, FileNotFoundError) as exc:
        raise CascadeStageError(f"lora={lora.path}: {exc}") from exc
    merged = merge_lora(unet)
    log.info("lora %s merged into %d spatial attention projections of the %s model", lora.path, len(merged),
             export.stage)
    return unet


def load_upsampler(export: Export, vae: Any, sampler: SamplerSettings, device: str, dtype: torch.dtype,
                   decode_chunk: int) -> Any:
    from drivesim.pipelines.upsample import Upsampler

    stage = export.config().get("stage") or {}
    frames = int(export.frames)
    unet = export.build_unet().to(device=device, dtype=dtype)
    return Upsampler(
        unet=unet, vae=vae, schedule=export.scheduler_config(),
        sampler=sampler, upscale=int(stage.get("upscale", 4)), frames=frames, overlap=max(1, frames // 4) if
        frames > 1 else 0, noise_level=min(0.1, float(stage.get("noise_aug_max", 0.1))),
        lowres_mode=str(stage.get("lowres_input", "latents")),
        guess=getattr(unet.condition_encoders, "guess_blend", None) is not None,
        decode_chunk=decode_chunk, device=device)
