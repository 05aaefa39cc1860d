"""Dash-cam video folders as a map-style dataset of clips (`data=videos`).

Clip k of a video covers target times start_k + i / fps; each target time takes the latest frame
at or before it (so sparse and variable-rate video resamples without error). Broken files are
found at index time: with on_error="raise" the first one raises its one-line DataError, with
"skip" they are left out, logged and counted in `skipped`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import av
import numpy as np
import torch
from torch.utils.data import Dataset

from drivesim.data.clip import Camera, Clip, EgoMotion, Labels, Source
from drivesim.data.ego import ego_motion
from drivesim.data.errors import DataError, check_on_error
from drivesim.data.sidecar import Sidecar, load_sidecar
from drivesim.data.splits import split_scenes
from drivesim.data.transforms import ResizeCrop
from drivesim.data.video_decode import pick_frames, read_frames
from drivesim.data.video_index import VideoIndex, index_folder

log = logging.getLogger(__name__)


class VideoFolderClips(Dataset):
    """Clips of `frames` frames at `fps`, resized and centre-cropped to `size` = (H, W)."""

    def __init__(
        self,
        root: str | Path,
        frames: int = 4,
        fps: float = 3.0,
        size: tuple[int, int] | list[int] = (128, 256),
        on_error: str = "raise",
        split: str | None = None,
        stride: float | None = None,
        horizon: int = 4,
        waypoint_dt: float = 0.5,
        seed: int = 0,
        val_fraction: float = 0.2,
        use_cache: bool = True,
    ) -> None:
        if frames < 1 or fps <= 0:
            raise ValueError(f"frames must be >= 1 and fps > 0, got frames={frames}, fps={fps}")
        self.root = Path(root)
        self.frames, self.fps = int(frames), float(fps)
        self.size = (int(size[0]), int(size[1]))
        self.on_error = check_on_error(on_error)
        self.stride = float(stride) if stride else self.frames / self.fps
        self.horizon, self.waypoint_dt = horizon, waypoint_dt
        folder = index_folder(self.root, use_cache=use_cache)
        self.skipped: list[str] = []
        self.videos: list[VideoIndex] = []
        self.sidecars: list[Sidecar | None] = []
        self.items: list[tuple[int, float]] = []
        names = sorted([v.path for v in folder.videos] + list(folder.errors))
        keep = set(split_scenes("videos", names, split, seed, val_fraction))
        for rel, error in folder.errors.items():
            if rel in keep:
                self._reject(error)
        for video in folder.videos:
            if video.path not in keep:
                continue
            try:
                self._add(video)
            except DataError as exc:
                self._reject(exc)
        if not keep:
            log.warning("%s: split %s has no video files", self.root, split)
        elif not self.items and on_error == "raise":
            raise DataError(self.root, f"no clips of {frames} frames at {fps} fps in any video")

    def _reject(self, error: DataError) -> None:
        if self.on_error == "raise":
            raise error
        log.warning("skipping %s", error)
        self.skipped.append(str(error))

    def _add(self, video: VideoIndex) -> None:
        path = self.root / video.path
        need = (self.frames - 1) / self.fps
        if video.span + 1e-9 < need:
            raise DataError(path, f"shorter than one clip: {video.span:.3f}s of frames, a clip of {self.frames} at {self.fps:g} fps needs {need:.3f}s")
        sidecar = load_sidecar(path)
        count = int(np.floor((video.span - need) / self.stride + 1e-9)) + 1
        vid = len(self.videos)
        self.videos.append(video)
        self.sidecars.append(sidecar)
        self.items.extend((vid, k * self.stride) for k in range(count))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Clip | None:
        vid, start = self.items[i]
        path = self.root / self.videos[vid].path
        try:
            return self._clip(vid, start)
        except (DataError, av.FFmpegError, OSError) as exc:  # read and decode errors only; bugs propagate
            error = exc if isinstance(exc, DataError) else DataError(path, f"{exc.__class__.__name__}: {exc}")
            if self.on_error == "raise":
                raise error from exc
            log.warning("skipping clip %d: %s", i, error)
            return None

    def _clip(self, vid: int, start: float) -> Clip:
        video, sidecar = self.videos[vid], self.sidecars[vid]
        path = self.root / video.path
        times = start + np.arange(self.frames) / self.fps
        picks = pick_frames(video, times)
        pts = [video.pts[p] for p in picks]
        decoded = read_frames(path, video, pts)
        tf = ResizeCrop(video.height, video.width, *self.size)
        frames = torch.from_numpy(np.stack([tf.image(decoded[p]) for p in pts])).permute(0, 3, 1, 2).contiguous()
        frame_times = video.seconds[picks]
        boxes, boxes_3d, classes, ids, valid = [], [], [], [], []
        for t in frame_times:
            entry = sidecar.at(float(t)) if sidecar else None
            if entry is None:
                b, c, n = np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64)
            else:
                b, keep = tf.boxes(entry.boxes)
                b, c, n = b[keep], entry.classes[keep], entry.ids[keep]
            boxes.append(b)
            classes.append(c)
            ids.append(n)
            boxes_3d.append(np.zeros((len(b), 8, 3), np.float32))
            valid.append(np.ones(len(b), bool))
        intrinsics = tf.intrinsics(sidecar.intrinsics) if sidecar and sidecar.intrinsics is not None else None
        return Clip(
            frames=frames, fps=self.fps, boxes_2d=boxes, boxes_3d=boxes_3d, classes=classes,
            instance_ids=ids, valid=valid, ego=self._ego(sidecar, times), labels=sidecar.labels if sidecar else Labels(),
            camera=Camera(intrinsics=intrinsics), source=Source(
                dataset="videos", scene=video.path, timestamps=times.astype(np.float64),
                frame_ids=[str(p) for p in pts], description=sidecar.description if sidecar else ""),
        )

    def _ego(self, sidecar: Sidecar | None, times: np.ndarray) -> EgoMotion:
        if sidecar is None or not sidecar.frames:
            return EgoMotion.unknown(len(times), self.horizon, self.waypoint_dt)
        track = sidecar.pose_track
        if track is not None:
            ego = ego_motion(track, times, self.horizon, self.waypoint_dt)
        else:
            ego = EgoMotion.unknown(len(times), self.horizon, self.waypoint_dt)
        # Measured speed / yaw rate (e.g. from CAN or GPS) take precedence over pose differences.
        for name, (t, v) in sidecar.measured.items():
            setattr(ego, name, np.interp(times, t, v).astype(np.float32))
        return ego
