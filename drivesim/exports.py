"""Export folders: what each training stage hands to the next stage and to `drivesim generate`.

An export holds a marker (`drivesim_export.json`: stage, model name, architecture hashes, prediction
type, the fps / frames / size / camera of its data, parents as relative paths with digests), the
resolved config, the model architecture (`model.json`), weights by group as safetensors, the noise
schedule, the text projection, and `summary.json`. Loaders read the marker first, so an export is
never mistaken for a plain diffusers folder; Lightning checkpoints are for exact resume only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivesim.atomic import atomic_write_text

log = logging.getLogger(__name__)

MARKER = "drivesim_export.json"
FORMAT = "drivesim-export"
VERSION = 1
STAGES = ("autoencoder", "image", "temporal", "interpolation", "upsampler", "decoder", "lora")
DIFFUSION_STAGES = ("image", "temporal", "interpolation", "upsampler")
MODEL_FILE = "model.json"
CONFIG_FILE = "config.yaml"
SCHEDULER_FILE = "scheduler_config.json"
TEXT_FILE = "text.json"
TEXT_PROJECTION = "text_projection.safetensors"
AUTOENCODER_DIR = "autoencoder"
TEMPORAL_DECODER_FILE = "temporal_decoder.safetensors"  # decoder exports
LORA_FILE = "lora.safetensors"  # lora exports


class ExportError(ValueError):
    """An export that is missing, malformed, or of the wrong stage or architecture (one line)."""


def folder_digest(path: str | Path) -> str:
    """sha256 over the weight and config files of a folder (names and bytes), order-independent of
    the file system; summary and marker files are left out so re-exporting keeps the digest."""
    root = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".safetensors", ".json", ".bin")
                   and p.name not in (MARKER, "summary.json") and not p.name.startswith("."))
    for file in files:
        digest.update(file.relative_to(root).as_posix().encode())
        with file.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Export:
    """A read export folder; `parent(role)` follows the marker's relative links."""

    path: Path
    stage: str
    model_name: str
    arch_hash: str
    spatial_hash: str
    prediction_type: str | None
    fps: float
    frames: int
    size: list[int]
    camera: dict[str, Any]
    parents: dict[str, dict[str, str]] = field(default_factory=dict)
    marker: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ links
    def parent_path(self, role: str) -> Path | None:
        entry = self.parents.get(role)
        if entry is None:
            return None
        path = Path(entry["path"])
        return path if path.is_absolute() else (self.path / path).resolve()

    def parent(self, role: str, check: bool = True) -> Export | None:
        """The parent export of `role` (e.g. "image", "autoencoder"), checked against its digest."""
        path = self.parent_path(role)
        if path is None:
            return None
        if not (path / MARKER).is_file():
            return None  # a plain SD folder: see parent_path
        if check:
            self.check_parent(role)
        return read_export(path)

    def check_parent(self, role: str) -> None:
        path = self.parent_path(role)
        if path is None:
            return
        if not path.exists():
            raise ExportError(f"{self.path / MARKER}: parent {role!r} {path} does not exist (moved? keep the "
                              "exports' relative layout)")
        want = self.parents[role].get("sha256")
        if want and folder_digest(path) != want:
            raise ExportError(f"{self.path / MARKER}: parent {role!r} at {path} has changed since this export "
                              "was made (sha256 differs)")

    # ------------------------------------------------------------------ contents
    def read_json(self, name: str) -> dict[str, Any]:
        file = self.path / name
        try:
            return dict(json.loads(file.read_text()))
        except FileNotFoundError as exc:
            raise ExportError(f"{file}: missing from the export") from exc
        except ValueError as exc:
            raise ExportError(f"{file}: not valid JSON ({exc})") from exc

    def config(self) -> Any:
        from omegaconf import OmegaConf

        return OmegaConf.load(self.path / CONFIG_FILE)

    def scheduler_config(self) -> dict[str, Any]:
        return self.read_json(SCHEDULER_FILE)

    def build_unet(self) -> Any:
        """The exported VideoUNet (EMA weights where training kept an EMA), in eval mode."""
        from drivesim.training.model_io import load_unet_from_export

        return load_unet_from_export(self)

    def autoencoder_path(self) -> Path:
        """The autoencoder this export's latents belong to: its own, or its parent's."""
        if self.stage == "autoencoder":
            return self.path / AUTOENCODER_DIR
        path = self.parent_path("autoencoder")
        if path is None:
            raise ExportError(f"{self.path / MARKER}: no autoencoder parent recorded")
        self.check_parent("autoencoder")
        if (path / MARKER).is_file():
            return path / AUTOENCODER_DIR
        from drivesim.models.vae import resolve_vae_folder  # an SD VAE folder, or a pipeline's vae/

        return resolve_vae_folder(path)

    def load_vae(self) -> Any:
        """drivesim.models.VideoVAE of this export's autoencoder (an autoencoder export or SD VAE)."""
        from drivesim.models.vae import VideoVAE

        if self.stage != "decoder":
            return VideoVAE.from_pretrained(self.autoencoder_path())
        stage = self.config().get("stage") or {}
        padding = str(stage.get("temporal_padding", "zeros"))  # exports before session 13: zeros
        try:
            vae = VideoVAE.from_pretrained(self.autoencoder_path(), temporal_decoder=True, temporal_padding=padding)
        except ValueError as exc:  # an unknown padding in the export's config
            raise ExportError(f"{self.path}: stage.temporal_padding: {exc}") from exc
        try:
            vae.temporal_decoder.load_temporal(self.path / TEMPORAL_DECODER_FILE)  # type: ignore[union-attr]
        except (KeyError, ValueError, FileNotFoundError) as exc:
            raise ExportError(f"{self.path}: {exc}") from exc
        return vae

    @property
    def has_text(self) -> bool:
        """Whether this model takes text (its export holds a text encoder's projection)."""
        return (self.path / TEXT_FILE).is_file()

    def text_encoder(self) -> Any:
        """The text encoder with its trained projection, or None when the model takes no text."""
        if not self.has_text:
            return None
        from drivesim.training.model_io import load_text_encoder

        return load_text_encoder(self)


def read_export(path: str | Path, stage: str | tuple[str, ...] | None = None) -> Export:
    """Read and check an export's marker; `stage` restricts which stages are accepted."""
    path = Path(path)
    marker_file = path / MARKER
    if not path.exists():
        raise ExportError(f"{path} does not exist")
    if not marker_file.is_file():
        raise ExportError(f"{path} is not a drivesim export (no {MARKER})")
    try:
        marker = json.loads(marker_file.read_text())
    except ValueError as exc:
        raise ExportError(f"{marker_file}: not valid JSON ({exc})") from exc
    if not isinstance(marker, dict) or marker.get("format") != FORMAT:
        raise ExportError(f"{marker_file}: not a {FORMAT} marker")
    if int(marker.get("version", 0)) > VERSION:
        raise ExportError(f"{marker_file}: export version {marker.get('version')} is newer than this drivesim "
                          f"reads ({VERSION})")
    if marker.get("stage") not in STAGES:
        raise ExportError(f"{marker_file}: unknown stage {marker.get('stage')!r}")
    wanted = (stage,) if isinstance(stage, str) else stage
    if wanted is not None and marker["stage"] not in wanted:
        raise ExportError(f"{path} is a {marker['stage']!r} export; expected {' or '.join(wanted)}")
    data = marker.get("data") or {}
    try:
        return Export(
            path=path.resolve(), stage=marker["stage"], model_name=str(marker["model"]),
            arch_hash=str(marker["arch_hash"]), spatial_hash=str(marker.get("spatial_hash", "")),
            prediction_type=marker.get("prediction_type"), fps=float(data["fps"]), frames=int(data["frames"]),
            size=[int(s) for s in data["size"]], camera=dict(data.get("camera") or {}),
            parents=dict(marker.get("parents") or {}), marker=marker)
    except (KeyError, TypeError, ValueError) as exc:
        raise ExportError(f"{marker_file}: malformed marker ({exc!r})") from exc


def write_marker(path: Path, *, stage: str, model_name: str, arch_hash: str, spatial_hash: str,
                 prediction_type: str | None, data: dict[str, Any], parents: dict[str, Path],
                 relative_to: Path | None = None) -> None:
    """Write the marker last (atomically): a folder with a marker is a complete export. Parents are
    linked relative to `relative_to` (the folder's final place; default: `path`)."""
    links = {}
    base = Path(relative_to if relative_to is not None else path).resolve()
    for role, parent in parents.items():
        parent = Path(parent).resolve()
        links[role] = {"path": os.path.relpath(parent, base), "sha256": folder_digest(parent)}
    marker = {"format": FORMAT, "version": VERSION, "stage": stage, "model": model_name, "arch_hash": arch_hash,
              "spatial_hash": spatial_hash, "prediction_type": prediction_type, "data": data, "parents": links}
    atomic_write_text(path / MARKER, json.dumps(marker, indent=2) + "\n")


def find_cascade(folder: str | Path) -> dict[str, Export]:
    """{stage: Export} of a cascade folder (one export per stage in subfolders, or the folder itself)."""
    folder = Path(folder)
    if (folder / MARKER).is_file():
        exp = read_export(folder)
        return {exp.stage: exp}
    if not folder.is_dir():
        raise ExportError(f"{folder} does not exist")
    found: dict[str, Export] = {}
    for sub in sorted(p for p in folder.iterdir() if (p / MARKER).is_file()):
        exp = read_export(sub)
        if exp.stage in found:
            raise ExportError(f"{folder}: two {exp.stage!r} exports ({found[exp.stage].path.name}, {sub.name})")
        found[exp.stage] = exp
    if not found:
        raise ExportError(f"{folder} holds no drivesim export (no {MARKER} in it or its subfolders)")
    return found
