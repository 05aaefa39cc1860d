"""Schema of the model group (conf/model/): a video UNet and its conditioning."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from drivesim.config.conditioning import ConditionOptions


@dataclass
class TemporalConfig:
    """The temporal layers inserted after every spatial layer (drivesim.models.temporal)."""

    conv: bool = True  # residual 3x1x1 conv block after every ResNet
    attention: bool = True  # temporal self-attention after every spatial transformer
    blend_init_logit: float = 0.5  # alpha = sigmoid(logit) weights the spatial path
    # The temporal conv blocks also read the per-frame embedding (diffusion time + labels, ego action,
    # noise level), as diffusers' TemporalResnetBlock does; off reproduces exports made before it.
    time_embedding: bool = False


@dataclass
class ModelConfig:
    """A video UNet: a diffusers UNet2DConditionModel config (or local weights) plus temporal options.

    With `pretrained` set, the image UNet is loaded from that local path (diffusers UNet folder,
    pipeline folder, or single `.safetensors`/`.ckpt` file, which also needs `pretrained_config` or
    `pretrained_original_config`); fields given in `unet` are then checked against the loaded config.
    """

    name: str = MISSING
    # Parent weights: an `image` export (temporal / interpolation stages) or local SD weights.
    pretrained: str | None = None
    pretrained_config: str | None = None  # local diffusers config folder for a single-file checkpoint
    pretrained_original_config: str | None = None  # or the original LDM YAML
    # UNet2DConditionModel kwargs; with `pretrained`, null (`model.unet=null`) takes the weights' own config
    # instead of checking a preset's fields against it.
    unet: dict[str, Any] | None = field(default_factory=dict)
    temporal: TemporalConfig = field(default_factory=TemporalConfig)
    # Condition encoders (typed: a misspelt option is a config error); None = no encoders.
    conditioning: ConditionOptions | None = None
    extra_in_channels: int = 0  # extra per-frame input channels (upsampler low-res frames), zero-init conv
    num_frames: int = 4
    latent_channels: int = 4
    latent_size: list[int] = field(default_factory=lambda: [8, 16])
    # The autoencoder: an `autoencoder` export or a local SD VAE folder (diffusion stages); for the
    # `autoencoder` stage, the one to fine-tune (its architecture replaces `autoencoder` below).
    vae: str | None = None
    # diffusers AutoencoderKL kwargs that the `autoencoder` stage builds from scratch.
    autoencoder: dict[str, Any] = field(default_factory=dict)
    # epsilon | v_prediction: what the UNet predicts (SD 2.1-v is v_prediction).
    prediction_type: str = "epsilon"
    # diffusers DDPMScheduler kwargs of the training noise schedule (SD's scaled-linear by default).
    noise_schedule: dict[str, Any] = field(default_factory=lambda: {
        "num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
        "beta_schedule": "scaled_linear", "clip_sample": False})
    # Text encoder: a local transformers folder, "minilm" (the packaged MiniLM) or null (no text).
    text_encoder: str | None = None
