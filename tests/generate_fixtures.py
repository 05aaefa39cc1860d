"""In-memory models for the generation tests: the `micro` video UNet, a tiny VAE, the training schedule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import yaml
from diffusers import AutoencoderKL, DDPMScheduler
from torch import nn

from drivesim.models import VideoUNet, build_video_unet
from drivesim.models.vae import VideoVAE

MICRO = Path(__file__).resolve().parents[1] / "conf" / "model" / "micro.yaml"
SCHEDULE: dict[str, Any] = dict(DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                                              beta_schedule="scaled_linear", clip_sample=False).config)


def micro_config(**changes: Any) -> dict[str, Any]:
    cfg = yaml.safe_load(MICRO.read_text())
    cfg.pop("defaults", None)
    cfg.pop("autoencoder", None)
    cfg.update(changes)
    return cfg


def micro_unet(seed: int = 0, **changes: Any) -> VideoUNet:
    """micro with every weight random (zero-init layers too), so every condition changes the output."""
    torch.manual_seed(seed)
    unet = build_video_unet(micro_config(**changes))
    with torch.no_grad():
        for p in unet.parameters():
            p.copy_(0.2 * torch.randn_like(p))
        for m in unet.modules():
            if isinstance(m, nn.GroupNorm) and m.weight is not None:
                m.weight.add_(1.0)
    return unet.eval()


def tiny_vae(seed: int = 0) -> VideoVAE:
    """64x128 frames <-> 4x8x16 latents (downscale 8), a few thousand parameters."""
    torch.manual_seed(seed)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8, 8, 8),
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        layers_per_block=1, norm_num_groups=4, mid_block_add_attention=False)
    return VideoVAE(vae.eval())


def write_micro_exports(root: Path, interpolation: bool = False, fps: float = 3.0) -> dict[str, Path]:
    """A micro cascade on disk (autoencoder, image, temporal [, interpolation]), through drivesim.exports.

    Random weights (no training): enough for the plumbing, the determinism and the resume checks.
    """
    import json

    from omegaconf import OmegaConf

    from drivesim.exports import write_marker
    from drivesim.scenario import PinholeCamera
    from drivesim.training.model_io import architecture_hashes, save_unet

    size = [64, 128]
    camera = {"intrinsics": PinholeCamera.mounted(128, 64).intrinsics.tolist(), "extrinsics": None}
    paths = {}
    ae = root / "autoencoder"
    (ae / "autoencoder").mkdir(parents=True)
    tiny_vae().vae.save_pretrained(ae / "autoencoder", safe_serialization=True)
    (ae / "config.yaml").write_text("stage: {name: autoencoder}\n")
    data = {"fps": fps, "frames": 4, "size": size, "camera": camera}
    write_marker(ae, stage="autoencoder", model_name="micro", arch_hash="ae", spatial_hash="ae", prediction_type=None,
                 data=data, parents={})
    paths["autoencoder"] = ae
    stages = [("image", 0, 1, {}), ("temporal", 1, 4, {"context_noise_max": 0.2})]
    if interpolation:
        stages.append(("interpolation", 2, 9, {"context_noise_max": 0.1, "stage_id": 0}))
    for stage, seed, frames, stage_cfg in stages:
        folder = root / stage
        changes: dict[str, Any] = {"num_frames": frames}
        if stage == "interpolation":
            changes["conditioning"] = {"embed_dim": 32, "box_adapter_width": 16, "stage": True}
        cfg = OmegaConf.create(micro_config(**changes))
        unet = micro_unet(seed, **changes)
        save_unet(unet, cfg, folder)
        (folder / "scheduler_config.json").write_text(json.dumps(SCHEDULE, default=list))
        (folder / "config.yaml").write_text(OmegaConf.to_yaml({"stage": {"name": stage, **stage_cfg}}))
        arch, spatial = architecture_hashes(unet)
        parents = {"autoencoder": ae} if stage != "temporal" else {"autoencoder": ae, "image": root / "image"}
        write_marker(folder, stage=stage, model_name="micro", arch_hash=arch, spatial_hash=spatial,
                     prediction_type="epsilon", parents=parents,
                     data={**data, "frames": frames, "fps": 4 * fps if stage == "interpolation" else fps})
        paths[stage] = folder
    return paths
