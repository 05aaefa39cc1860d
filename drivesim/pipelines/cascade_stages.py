"""The later cascade stages at generation: checks and loading of upsampler, decoder and LoRA exports."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from drivesim.exports import LORA_FILE, MARKER, Export, ExportError, folder_digest
from drivesim.models import VideoUNet
from drivesim.pipelines.engine import SamplerSettings

log = logging.getLogger(__name__)


class CascadeStageError(ExportError):
    """An upsampler / decoder / lora export that does not fit the cascade (one line)."""


def check_same_autoencoder(export: Export, prediction: Export, key: str) -> None:
    """`export` must work in the latent space of the cascade's autoencoder: the same weights, or the same
    source export where the cascade ships an fp16 copy of it (its summary records the source's digest)."""
    mine, theirs = Path(export.autoencoder_path()).resolve(), Path(prediction.autoencoder_path()).resolve()
    if mine == theirs or folder_digest(mine) == folder_digest(theirs):
        return
    if autoencoder_sources(export) & autoencoder_sources(prediction):
        log.info("%s=%s: its autoencoder is the source of the cascade's shipped copy %s", key, export.path, theirs)
        return
    raise CascadeStageError(f"{key}={export.path}: trained with the autoencoder {mine}, but the cascade's latents "
                            f"come from {theirs}")


def autoencoder_sources(export: Export) -> set[str]:
    """Digests naming the autoencoder export behind `export`: its own, and where it is a shipped cascade's
    copy (the cascade's summary.json lists it with this digest), the export it was copied from."""
    folder = Path(export.autoencoder_path()).resolve()  # <autoencoder export>/autoencoder, or an SD VAE folder
    path = folder.parent
    if not (path / MARKER).is_file():
        return set()
    own = folder_digest(path)
    found = {own}
    summary = path.parent / "summary.json"
    try:
        record = json.loads(summary.read_text()) if summary.is_file() else {}
    except (OSError, ValueError):
        return found
    if record.get("format") == "drivesim-cascade":
        for stage in (record.get("stages") or {}).values():
            if isinstance(stage, dict) and stage.get("sha256") == own and stage.get("source_sha256"):
                found.add(str(stage["source_sha256"]))
    return found


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
