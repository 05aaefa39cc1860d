"""The clip contract (DESIGN.md section 3): one typed training clip, whatever the source.

Frames are a torch uint8 tensor because the model consumes them; per-frame annotations are numpy
arrays because their length varies per frame (the collate pads them into tensors with a mask).
Units and coordinate frames: drivesim/data/README.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

#: Order of `Labels` fields and of the (B, 3) label tensor in a batch.
LABEL_FIELDS = ("time_of_day", "weather", "crowdedness")
#: The class index every label uses for "not known" (a description with no known word).
UNKNOWN = 0


@dataclass
class Labels:
    """Scene-level labels as class indices into `drivesim.data.labels.VOCAB`; 0 means unknown."""

    time_of_day: int = UNKNOWN
    weather: int = UNKNOWN
    crowdedness: int = UNKNOWN

    def as_array(self) -> np.ndarray:
        return np.array([self.time_of_day, self.weather, self.crowdedness], dtype=np.int64)


@dataclass
class EgoMotion:
    """Ego motion at each clip frame: speed (T,) m/s, yaw rate (T,) rad/s (positive = turning left),
    waypoints (T, K, 2) m of the future ego positions in the ego frame at that frame (x forward,
    y left), waypoint_mask (T, K) False where the future runs past the data, waypoint_dt seconds apart.
    """

    speed: np.ndarray
    yaw_rate: np.ndarray
    waypoints: np.ndarray
    waypoint_mask: np.ndarray
    waypoint_dt: float

    @staticmethod
    def unknown(frames: int, horizon: int, waypoint_dt: float) -> EgoMotion:
        """Ego motion of a source that has none (a bare video): NaN values, all masked."""
        nan = np.full(frames, np.nan, dtype=np.float32)
        return EgoMotion(
            speed=nan.copy(),
            yaw_rate=nan.copy(),
            waypoints=np.full((frames, horizon, 2), np.nan, dtype=np.float32),
            waypoint_mask=np.zeros((frames, horizon), dtype=bool),
            waypoint_dt=waypoint_dt,
        )


@dataclass
class Camera:
    """Pinhole intrinsics (3, 3) of the *output* frames (after resize/crop; the same pixel-edge
    coordinates as `boxes_2d`, the image spanning [0, W] x [0, H], see README) and the camera-to-ego
    extrinsics (4, 4)."""

    intrinsics: np.ndarray | None = None
    extrinsics: np.ndarray | None = None


@dataclass
class Source:
    """Where a clip came from: dataset name, scene (or video file), per-frame timestamps in seconds
    from the start of the scene/video, and per-frame source identifiers (sample_data tokens or frame PTS)."""

    dataset: str
    scene: str
    timestamps: np.ndarray
    frame_ids: list[str] = field(default_factory=list)
    # The scene's free-text description ("night, rain, crowded"): the text prompt of the clip.
    description: str = ""


@dataclass
class Clip:
    """T frames and everything known about them.

    boxes_2d[t] (N_t, 4) float32 xyxy in output-image pixels (pixel edges: the image spans [0, W] x [0, H]);
    boxes_3d[t] (N_t, 8, 3) float32 box corners in the camera frame (metres; nuScenes corner order);
    classes[t] (N_t,) int64 indices into `drivesim.data.labels.CLASSES`; instance_ids[t] (N_t,) int64,
    the same object keeps its id across frames; valid[t] (N_t,) bool, False where the annotation was
    carried from one key frame rather than observed or interpolated at that time.
    """

    frames: torch.Tensor
    fps: float
    boxes_2d: list[np.ndarray]
    boxes_3d: list[np.ndarray]
    classes: list[np.ndarray]
    instance_ids: list[np.ndarray]
    valid: list[np.ndarray]
    ego: EgoMotion
    labels: Labels
    camera: Camera
    source: Source

    def __post_init__(self) -> None:
        t = self.frames.shape[0]
        if self.frames.dtype != torch.uint8 or self.frames.ndim != 4 or self.frames.shape[1] != 3:
            raise ValueError(f"clip frames must be uint8 (T, 3, H, W), got {self.frames.dtype} {tuple(self.frames.shape)}")
        for name in ("boxes_2d", "boxes_3d", "classes", "instance_ids", "valid"):
            if len(getattr(self, name)) != t:
                raise ValueError(f"clip.{name} has {len(getattr(self, name))} frames, frames has {t}")

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def max_boxes(self) -> int:
        return max((len(b) for b in self.boxes_2d), default=0)

    @property
    def box_mask(self) -> np.ndarray:
        """(T, N) bool: which rows of `boxes_2d_padded` hold a box (N = most boxes in one frame)."""
        mask = np.zeros((self.num_frames, self.max_boxes), dtype=bool)
        for t, boxes in enumerate(self.boxes_2d):
            mask[t, : len(boxes)] = True
        return mask

    @property
    def boxes_2d_padded(self) -> np.ndarray:
        """(T, N, 4) float32 boxes padded with zeros; see `box_mask`."""
        out = np.zeros((self.num_frames, self.max_boxes, 4), dtype=np.float32)
        for t, boxes in enumerate(self.boxes_2d):
            out[t, : len(boxes)] = boxes
        return out


def empty_boxes(frames: int) -> dict[str, list[np.ndarray]]:
    """Per-frame box fields of a clip without annotations."""
    return {
        "boxes_2d": [np.zeros((0, 4), np.float32) for _ in range(frames)],
        "boxes_3d": [np.zeros((0, 8, 3), np.float32) for _ in range(frames)],
        "classes": [np.zeros(0, np.int64) for _ in range(frames)],
        "instance_ids": [np.zeros(0, np.int64) for _ in range(frames)],
        "valid": [np.zeros(0, bool) for _ in range(frames)],
    }
