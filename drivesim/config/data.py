"""Schemas of the data group (conf/data/): synthetic, nuScenes and video-folder sources.

Every field is documented in drivesim/data/README.md; `drivesim.data.build_dataset` turns a node
into a dataset and `drivesim.data.ClipDataModule` into loaders.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING


@dataclass
class _ClipOptions:
    # Frames per clip and (H, W) pixels; null: what the model, stage and autoencoder need (drivesim
    # train fills them in); readers of a bare data config must set them.
    frames: int | None = 4
    fps: float = 3.0
    size: list[int] | None = field(default_factory=lambda: [128, 256])
    batch_size: int = 2
    num_workers: int = 2
    on_error: str = "raise"
    # Seconds between the starts of consecutive clips; null: one clip length (no overlap).
    stride: float | None = None
    # Future ego waypoints: how many, and how many seconds apart.
    horizon: int = 4
    waypoint_dt: float = 0.5
    # Seeded train/val split of scenes or files (non-official versions), and the sampling seed.
    seed: int = 0
    val_fraction: float = 0.2
    train_split: str | None = "train"
    val_split: str | None = "val"


@dataclass
class _NuScenesOptions(_ClipOptions):
    camera: str = "CAM_FRONT"
    # Farthest a target time may be from its frame (s); null: max(0.5 / fps, 0.75 / 12 Hz).
    max_gap: float | None = None
    # Least nuScenes visibility level ('1'..'4') a box needs to be kept.
    min_visibility: int = 1


@dataclass
class SyntheticDataConfig(_NuScenesOptions):
    name: str = "synthetic"
    root: str = "outputs/synth"
    version: str = "v1.0-synth"
    size: list[int] | None = field(default_factory=lambda: [64, 128])
    num_workers: int = 0


@dataclass
class NuScenesDataConfig(_NuScenesOptions):
    name: str = "nuscenes"
    root: str = MISSING
    version: str = "v1.0-trainval"


@dataclass
class VideoDataConfig(_ClipOptions):
    name: str = "videos"
    root: str = MISSING


@dataclass
class ImageDataConfig(_ClipOptions):
    """A folder of still images (DreamBooth/LoRA subject photos): each image is one static clip."""

    name: str = "images"
    root: str = MISSING
    frames: int | None = 1
    # Every image trains (and validation reads them too): a subject has a handful of photos.
    train_split: str | None = None
    val_split: str | None = None
    prompt: str = ""  # every image's description (the text prompt, e.g. "a photo of a sks car")
