"""Load a local Stable Diffusion image UNet: diffusers folder, pipeline folder, or single file.

Everything is offline: a single original-layout checkpoint goes through diffusers' own single-file
converter, with its config taken from a local diffusers folder or the original LDM YAML, never the hub.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, cast

import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import load_file

log = logging.getLogger(__name__)

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
_LDM_UNET_PREFIX = "model.diffusion_model."


def load_image_unet(path: str | Path, config: str | Path | None = None,
                    original_config: str | Path | None = None) -> UNet2DConditionModel:
    """The image UNet at `path`; `config`/`original_config` are only for a single-file checkpoint."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"pretrained UNet {path} does not exist")
    if path.is_dir():
        if config is not None or original_config is not None:
            raise ValueError(f"{path} is a folder: its own config.json is used, do not pass config/original_config")
        return _load_folder(path)
    if path.suffix not in SINGLE_FILE_SUFFIXES:
        raise ValueError(f"{path}: a single-file checkpoint must end in {' or '.join(SINGLE_FILE_SUFFIXES)}")
    return _load_single_file(path, config, original_config)


def unet_folder(path: Path) -> tuple[Path, str | None]:
    """(root, subfolder) of the UNet config in a diffusers UNet folder or a full pipeline folder."""
    if (path / "unet" / "config.json").is_file():
        return path, "unet"
    if (path / "config.json").is_file():
        return path, None
    raise ValueError(f"{path} is neither a diffusers UNet folder (config.json) nor a pipeline folder "
                     "(unet/config.json)")


def _load_folder(path: Path) -> UNet2DConditionModel:
    root, subfolder = unet_folder(path)
    log.info("loading diffusers UNet from %s%s", root, f"/{subfolder}" if subfolder else "")
    unet = UNet2DConditionModel.from_pretrained(root, subfolder=subfolder, local_files_only=True)
    return unet  # type: ignore[no-any-return]


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a `.safetensors` file, or of a `.ckpt` through torch.load(weights_only=True)."""
    if path.suffix == ".safetensors":
        return load_file(str(path))
    try:
        state: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: cannot read as a weights-only torch checkpoint: {exc}") from exc
    while isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def _load_single_file(path: Path, config: str | Path | None,
                      original_config: str | Path | None) -> UNet2DConditionModel:
    if config is None and original_config is None:
        raise ValueError(f"single-file checkpoint {path} needs a local config: pass config=<diffusers UNet or "
                         "pipeline folder> or original_config=<original LDM .yaml>; drivesim never fetches "
                         "configs from the hub")
    if config is not None and original_config is not None:
        raise ValueError(f"{path}: pass either config or original_config, not both")
    state = read_checkpoint(path)
    if not any(k.startswith(_LDM_UNET_PREFIX) for k in state):
        raise ValueError(f"{path} holds no original-layout UNet weights (no key starts with {_LDM_UNET_PREFIX!r})")
    kwargs: dict[str, Any] = {}
    if config is not None:
        root, subfolder = unet_folder(Path(config))
        kwargs.update(config=str(root), subfolder=subfolder)
    else:
        yaml = Path(original_config)  # type: ignore[arg-type]
        if not yaml.is_file():
            raise FileNotFoundError(f"original_config {yaml} does not exist")
        kwargs.update(original_config=str(yaml))
    log.info("loading single-file UNet %s", path)
    unet: Any = UNet2DConditionModel.from_single_file(state, local_files_only=True, **kwargs)
    empty = [name for name, p in unet.named_parameters() if p.is_meta]
    if empty:
        raise ValueError(f"{path}: no weights for UNet parameter {empty[0]!r} ({len(empty)} missing)")
    return cast(UNet2DConditionModel, unet)
