"""Write a stage's export folder: built beside the target, then swapped in (never a partial export)."""

from __future__ import annotations

import json
import logging
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from drivesim.atomic import atomic_write_text
from drivesim.exports import AUTOENCODER_DIR, CONFIG_FILE, SCHEDULER_FILE, write_marker
from drivesim.training.model_io import architecture_hashes, save_text_encoder, save_unet

log = logging.getLogger(__name__)
_PACKAGES = ("torch", "diffusers", "lightning", "transformers", "safetensors", "numpy", "drivesim")


def git_commit() -> str:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def write_export(target: Path, *, stage: str, cfg: DictConfig, module: Any, data_info: dict[str, Any],
                 parents: dict[str, Path], summary: dict[str, Any]) -> Path:
    """Write `target` (the run's export/ folder) with the module's EMA weights."""
    tmp = target.parent / f".{target.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    atomic_write_text(tmp / CONFIG_FILE, OmegaConf.to_yaml(cfg))
    with module.ema_weights(), torch.no_grad():
        if hasattr(module, "export_files"):  # a stage that writes its own weights (decoder, lora)
            arch, spatial, prediction = module.export_files(tmp, cfg)
        elif stage == "autoencoder":
            module.autoencoder.save_pretrained(tmp / AUTOENCODER_DIR, safe_serialization=True)
            arch = spatial = _ae_hash(module)
            prediction = None
        else:
            save_unet(module.unet, cfg.model, tmp)
            atomic_write_text(tmp / SCHEDULER_FILE, json.dumps(module.objective.scheduler_config(), indent=2,
                                                                default=list) + "\n")
            if module.text_encoder is not None:
                save_text_encoder(module.text_encoder, str(cfg.model.text_encoder), tmp)
            arch, spatial = architecture_hashes(module.unet)
            prediction = str(cfg.model.prediction_type)
    summary = {**summary, "git_commit": git_commit(), "packages": package_versions(), "command": sys.argv}
    atomic_write_text(tmp / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    # The marker goes in last, with parents linked relative to the final location.
    write_marker(tmp, stage=stage, model_name=str(cfg.model.name), arch_hash=arch, spatial_hash=spatial,
                 prediction_type=prediction, data=data_info, parents=parents, relative_to=target)
    old = target.parent / f".{target.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    log.info("export written to %s", target)
    return target


def _ae_hash(module: Any) -> str:
    import hashlib

    shapes = [(k, tuple(v.shape)) for k, v in module.autoencoder.state_dict().items()]
    return hashlib.sha256(json.dumps(shapes).encode()).hexdigest()[:16]
