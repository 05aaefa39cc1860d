"""Build the video UNet a `conf/model/*.yaml` describes: random init, or inflated local SD weights."""

from __future__ import annotations

import logging
from typing import Any

from diffusers import UNet2DConditionModel
from omegaconf import DictConfig, OmegaConf
from torch import nn

from drivesim.config.model import ModelConfig
from drivesim.models.conditioning.context_blend import attach_schedule
from drivesim.models.loading import load_image_unet
from drivesim.models.video_unet import VideoUNet

log = logging.getLogger(__name__)

# Config fields that do not change the architecture or weights (a default resolution only).
_RESOLUTION_HINTS = ("sample_size",)


def _as_dict(cfg: ModelConfig | DictConfig | dict[str, Any]) -> dict[str, Any]:
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    if isinstance(cfg, dict):
        return cfg
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]


def build_video_unet(model_cfg: ModelConfig | DictConfig | dict[str, Any],
                     condition_encoders: nn.Module | None = None) -> VideoUNet:
    """The video UNet of `model_cfg` (the `model` config group), with optional condition encoders."""
    cfg = _as_dict(model_cfg)
    unet_kwargs = dict(cfg.get("unet") or {})
    name = cfg.get("name", "?")
    unet: Any
    if cfg.get("pretrained"):
        unet = load_image_unet(cfg["pretrained"], config=cfg.get("pretrained_config"),
                               original_config=cfg.get("pretrained_original_config"))
        disagreement = first_disagreement(unet_kwargs, dict(unet.config))
        if disagreement is not None:
            key, value, loaded = disagreement
            raise ValueError(f"model {name}: unet.{key}={value!r} but {cfg['pretrained']} has {loaded!r}")
        log.info("model %s: inflating pretrained UNet from %s", name, cfg["pretrained"])
    else:
        if not unet_kwargs:
            raise ValueError(f"model {name}: give either `pretrained` or the `unet` architecture")
        try:
            unet = UNet2DConditionModel(**unet_kwargs)
        except TypeError as exc:
            raise ValueError(f"model {name}: bad `unet` field: {exc}") from exc
    if int(unet.config.in_channels) != int(cfg.get("latent_channels", unet.config.in_channels)):
        raise ValueError(f"model {name}: latent_channels={cfg['latent_channels']} but the UNet takes "
                         f"{unet.config.in_channels} input channels")
    if cfg.get("conditioning") is not None:
        if condition_encoders is not None:
            raise ValueError(f"model {name}: condition encoders given both as an argument and in `conditioning`")
        condition_encoders = condition_encoders_for(name, cfg["conditioning"], unet)
    temporal = cfg.get("temporal") or {}
    video = VideoUNet.from_image_unet(
        unet, condition_encoders=condition_encoders,
        extra_in_channels=int(cfg.get("extra_in_channels", 0)),
        temporal_conv=bool(temporal.get("conv", True)), temporal_attention=bool(temporal.get("attention", True)),
        blend_init_logit=float(temporal.get("blend_init_logit", 0.5)),
        temporal_time_embedding=bool(temporal.get("time_embedding", False)))
    attach_schedule(video, dict(cfg.get("noise_schedule") or ModelConfig().noise_schedule),
                    str(cfg.get("prediction_type", "epsilon")))
    return video


def condition_encoders_for(name: str, options: dict[str, Any], unet: Any) -> nn.Module:
    """The condition weight group sized for `unet` (its widths, time embedding and latent channels)."""
    from drivesim.models.conditioning import ConditionEncoders, ConditionOptions

    try:
        parsed = ConditionOptions(**options)
    except TypeError as exc:
        raise ValueError(f"model {name}: bad `conditioning` field: {exc}") from exc
    return ConditionEncoders.for_unet(unet, parsed)


def _normalise(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


def first_disagreement(asked: dict[str, Any], actual: dict[str, Any],
                       only_known: bool = False) -> tuple[str, Any, Any] | None:
    """(key, asked, actual) of the first `model.unet` field the weights' own UNet config contradicts, or None;
    resolution hints never count. `only_known`: fields `actual` does not record are not compared."""
    for key, value in asked.items():
        if key in _RESOLUTION_HINTS or (only_known and key not in actual):
            continue
        if _normalise(actual.get(key)) != _normalise(value):
            return key, value, actual.get(key)
    return None
