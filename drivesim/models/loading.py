"""Load a local Stable Diffusion image UNet: diffusers folder, pipeline folder, or single file.

Everything is offline: a single original-layout checkpoint goes through diffusers' own single-file
converter, with its config taken from a local diffusers folder or the original LDM YAML, never the hub.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, cast

import torch
from diffusers import UNet2DConditionModel
from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint
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


def pipeline_scheduler_config(path: Path) -> Path | None:
    """`scheduler/scheduler_config.json` of the pipeline a UNet folder belongs to (`path` the pipeline folder or its
    `unet/`), or None: a bare UNet folder or single file carries no schedule."""
    try:
        root, subfolder = unet_folder(path)
    except ValueError:
        return None
    pipeline = root if subfolder else (root.parent if root.name == "unet" else None)
    found = pipeline / "scheduler" / "scheduler_config.json" if pipeline is not None else None
    return found if found is not None and found.is_file() else None


# diffusers' weight file names: plain, sharded (-00001-of-00002) and variant (.fp16) forms.
_WEIGHTS = re.compile(r"diffusion_pytorch_model(?:-\d+-of-\d+)?(?:\.(?P<variant>[^.]+))?\.(?:safetensors|bin)$")
_INDEX = re.compile(r"diffusion_pytorch_model\.(?:safetensors|bin)\.index(?:\.(?P<variant>[^.]+))?\.json$")


def weight_variant(folder: Path) -> str | None:
    """The variant (e.g. "fp16") to load from a diffusers UNet folder: None when plain weights exist,
    else the one variant present (folders downloaded with `variant="fp16"` hold only those files)."""
    variants: set[str] = set()
    for file in folder.iterdir():
        match = _WEIGHTS.fullmatch(file.name) or _INDEX.fullmatch(file.name)
        if match:
            if match["variant"] is None:
                return None
            variants.add(match["variant"])
    if not variants:
        return None  # diffusers names the missing weight file itself
    if len(variants) > 1:
        raise ValueError(f"{folder} holds only variant weights {sorted(variants)}; keep one variant "
                         "or add the plain diffusion_pytorch_model.safetensors")
    return variants.pop()


def _load_folder(path: Path) -> UNet2DConditionModel:
    root, subfolder = unet_folder(path)
    variant = weight_variant(root / subfolder if subfolder else root)
    log.info("loading diffusers UNet from %s%s%s", root, f"/{subfolder}" if subfolder else "",
             f" (variant {variant})" if variant else "")
    # float32 like the single-file path (a fp16 variant would otherwise keep its storage dtype);
    # cast the video UNet afterwards for half-precision inference.
    try:
        unet, info = UNet2DConditionModel.from_pretrained(root, subfolder=subfolder, variant=variant,
                                                          local_files_only=True, torch_dtype=torch.float32,
                                                          output_loading_info=True)
    except ValueError as exc:  # e.g. a weight whose shape disagrees with config.json: diffusers names the key
        raise ValueError(f"{path}: {exc}") from exc
    _check_complete_load(path, list(info.get("missing_keys", [])), list(info.get("unexpected_keys", [])))
    return unet  # type: ignore[no-any-return]


def _check_complete_load(path: Path, missing: list[str], unexpected: list[str]) -> None:
    """A strict load: weights the config has no place for, or places the weights leave empty, are errors (diffusers
    only logs them; the first forward would then fail on a meta tensor, or the output silently differ)."""
    if missing:
        raise ValueError(f"{path}: no weights for UNet parameter {sorted(missing)[0]!r} ({len(missing)} missing): "
                         "the weights do not match their config")
    if unexpected:
        raise ValueError(f"{path}: weight {sorted(unexpected)[0]!r} has no place in the config's UNet "
                         f"({len(unexpected)} unused): the weights do not match their config")


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


# Top-level names of an original (LDM) UNet's own state dict, as saved without its wrapper's prefix.
_LDM_UNET_ROOTS = ("input_blocks.", "middle_block.", "output_blocks.", "time_embed.", "out.")


def with_unet_prefix(state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """`state` with the UNet keys under `model.diffusion_model.` as diffusers' converter expects: a
    full SD checkpoint has them there already (beside VAE and text-encoder keys, which are left to it);
    a UNet-only original-layout file may carry them bare."""
    if any(k.startswith(_LDM_UNET_PREFIX) for k in state):
        return state
    if any(k.startswith("input_blocks.") for k in state):
        log.info("%s: original-layout UNet keys without %r; adding it", path, _LDM_UNET_PREFIX)
        return {(_LDM_UNET_PREFIX + k if k.startswith(_LDM_UNET_ROOTS) else k): v for k, v in state.items()}
    raise ValueError(f"{path} holds no original-layout UNet weights (no key starts with {_LDM_UNET_PREFIX!r} "
                     "or input_blocks.)")


def _load_single_file(path: Path, config: str | Path | None,
                      original_config: str | Path | None) -> UNet2DConditionModel:
    if config is None and original_config is None:
        raise ValueError(f"single-file checkpoint {path} needs a local config: pass config=<diffusers UNet or "
                         "pipeline folder> or original_config=<original LDM .yaml>; drivesim never fetches "
                         "configs from the hub")
    if config is not None and original_config is not None:
        raise ValueError(f"{path}: pass either config or original_config, not both")
    state = with_unet_prefix(read_checkpoint(path), path)
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
    try:
        unet: Any = UNet2DConditionModel.from_single_file(state, local_files_only=True, **kwargs)
    except ValueError as exc:  # e.g. a weight whose shape disagrees with the config: diffusers names the key
        raise ValueError(f"{path} with config {config or original_config}: {exc}") from exc
    except KeyError as exc:  # diffusers' YAML mapping reads model.params.{unet,first_stage}_config...
        raise ValueError(f"{path}: original_config {original_config} lacks the field {exc} that diffusers' "
                         "LDM config mapping reads (compare the v1/v2-inference.yaml layout)") from exc
    except NotImplementedError as exc:  # "Cannot copy out of meta tensor": a parameter the file has no weight for
        raise ValueError(f"{path}: the checkpoint lacks weights the config {config or original_config} describes "
                         f"({' '.join(str(exc).split())[:120]})") from exc
    empty = [name for name, p in unet.named_parameters() if p.is_meta]
    converted = convert_ldm_unet_checkpoint(state, dict(unet.config))
    _check_complete_load(path, empty, sorted(set(converted) - set(unet.state_dict())))
    return cast(UNet2DConditionModel, unet)
