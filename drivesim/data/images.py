"""A folder of still images as clips (`data=images`): the subject photos of DreamBooth/LoRA.

Every image (png, jpg, jpeg, webp; in sorted order, subfolders included) is one clip of `frames`
copies of itself, resized and centre-cropped to `size` = (H, W), with no boxes, unknown ego motion,
and `prompt` as its description (its labels parsed from it, as for any description). The seeded
train/val split of `drivesim.data.splits` applies per image; `data=images` trains on every
image (its train_split and val_split are null).
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from drivesim.data.clip import Camera, Clip, EgoMotion, Source
from drivesim.data.errors import DataError, check_on_error
from drivesim.data.labels import parse_description
from drivesim.data.splits import split_scenes
from drivesim.data.transforms import ResizeCrop

log = logging.getLogger(__name__)
SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


class ImageFolderClips(Dataset):
    def __init__(self, root: str | Path, frames: int = 1, fps: float = 3.0,
                 size: tuple[int, int] | list[int] = (128, 256), on_error: str = "raise", split: str | None = None,
                 horizon: int = 4, waypoint_dt: float = 0.5, seed: int = 0, val_fraction: float = 0.2,
                 prompt: str = "") -> None:
        if frames < 1 or fps <= 0:
            raise ValueError(f"frames must be >= 1 and fps > 0, got frames={frames}, fps={fps}")
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(self.root, "not a folder of images")
        self.frames, self.fps, self.size = int(frames), float(fps), (int(size[0]), int(size[1]))
        self.on_error = check_on_error(on_error)
        self.horizon, self.waypoint_dt, self.prompt = horizon, waypoint_dt, prompt
        names = sorted(p.relative_to(self.root).as_posix() for p in self.root.rglob("*")
                       if p.is_file() and p.suffix.lower() in SUFFIXES)
        if not names:
            raise DataError(self.root, f"no image files ({', '.join(SUFFIXES)})")
        self.items = split_scenes("images", names, split, seed, val_fraction)
        self.skipped: list[str] = []

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Clip | None:
        path = self.root / self.items[i]
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            error = DataError(path, "unreadable image")
            if self.on_error == "raise":
                raise error
            log.warning("skipping %s", error)
            return None
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        frame = ResizeCrop(rgb.shape[0], rgb.shape[1], *self.size).image(rgb)
        t = self.frames
        frames = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None].repeat(t, 1, 1, 1)
        empty = [np.zeros((0, 4), np.float32) for _ in range(t)]
        return Clip(
            frames=frames.contiguous(), fps=self.fps, boxes_2d=empty,
            boxes_3d=[np.zeros((0, 8, 3), np.float32) for _ in range(t)],
            classes=[np.zeros(0, np.int64) for _ in range(t)], instance_ids=[np.zeros(0, np.int64) for _ in range(t)],
            valid=[np.zeros(0, bool) for _ in range(t)], ego=EgoMotion.unknown(t, self.horizon, self.waypoint_dt),
            labels=parse_description(self.prompt), camera=Camera(),
            source=Source(dataset="images", scene=self.items[i], timestamps=np.arange(t) / self.fps,
                          frame_ids=[self.items[i]] * t, description=self.prompt))
