"""Training clips from nuScenes-format data (real or synthetic) and dash-cam video folders.

The clip contract, units and coordinate frames: drivesim/data/README.md.
"""

from typing import Any

from drivesim.data.clip import Camera, Clip, EgoMotion, Labels, Source
from drivesim.data.collate import ClipBatch, collate_clips
from drivesim.data.errors import DataError
from drivesim.data.factory import build_dataset
from drivesim.data.nuscenes import NuScenesClips
from drivesim.data.transforms import ResizeCrop
from drivesim.data.videos import VideoFolderClips

_LAZY = {"ClipDataModule", "SeededSampler", "SkipReport"}  # import Lightning only when asked for


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from drivesim.data import datamodule

        return getattr(datamodule, name)
    raise AttributeError(f"module 'drivesim.data' has no attribute {name!r}")


__all__ = [
    "Camera", "Clip", "ClipBatch", "ClipDataModule", "DataError", "EgoMotion", "Labels", "NuScenesClips",
    "ResizeCrop", "SeededSampler", "SkipReport", "Source", "VideoFolderClips", "build_dataset", "collate_clips",
]
