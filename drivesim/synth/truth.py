"""Per-scene ground-truth sidecar (DIR/synth/truth/<scene>.json) and its typed loader.

The nuScenes tables hold what nuScenes holds; this sidecar holds what only a simulator knows exactly,
for every camera frame (key frames and sweeps): the ego's speed and yaw rate, lane centre lines and road
edges in the ego frame, the instance mask and its index -> instance token mapping, and exact boxes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

TRUTH_DIR = "synth/truth"
MASK_DIR = "synth/masks"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class FrameObject:
    """An agent in one camera frame: its exact box (global frame, nuScenes conventions) and pixels."""

    index: int  # instance index: the value of its pixels in the mask
    instance_token: str
    annotation_token: str | None  # its sample_annotation token at key frames, None at sweeps
    category: str
    translation: np.ndarray  # (3,) box centre, global
    size: np.ndarray  # (3,) width, length, height
    rotation: np.ndarray  # (4,) w, x, y, z, global
    visible_px: int  # pixels of it in the mask
    full_px: int  # pixels it covers when drawn alone (inside the image)
    bbox_full: tuple[int, int, int, int] | None  # x0, y0, x1, y1 (exclusive) of the alone drawing


@dataclass(frozen=True)
class SceneTruth:
    """Ground truth of one scene, arrays over its T camera frames in time order."""

    scene_name: str
    scene_token: str
    labels: dict[str, str]  # time_of_day, weather, crowdedness
    fps: float
    sample_data_tokens: list[str]
    timestamps: np.ndarray  # (T,) int64 microseconds
    is_key_frame: np.ndarray  # (T,) bool
    image_paths: list[Path]
    mask_paths: list[Path]
    ego_speed: np.ndarray  # (T,) m/s
    ego_yaw_rate: np.ndarray  # (T,) rad/s, counter-clockwise positive
    ego_accel: np.ndarray  # (T,) m/s^2 along the path
    lane_centres: np.ndarray  # (T, L, K, 3) ego frame, x forward, y left, z up
    lane_directions: np.ndarray  # (L,) +1 same direction as the ego's lane, -1 oncoming
    road_edges: np.ndarray  # (T, 2, K, 3) ego frame: right kerb, left kerb
    instance_tokens: dict[int, str]  # mask index -> instance token (every agent of the scene)
    instance_categories: dict[int, str]  # mask index -> nuScenes category name
    objects: list[list[FrameObject]]  # per frame

    def load_mask(self, frame: int) -> np.ndarray:
        """(H, W) uint16 instance mask of `frame` (0 = no agent)."""
        import cv2

        mask = cv2.imread(str(self.mask_paths[frame]), cv2.IMREAD_UNCHANGED)
        if mask is None:
            raise FileNotFoundError(f"instance mask not readable: {self.mask_paths[frame]}")
        return mask.astype(np.uint16)  # stored 8-bit when a scene has < 256 agents, else 16-bit


def truth_path(root: Path | str, scene_name: str) -> Path:
    return Path(root) / TRUTH_DIR / f"{scene_name}.json"


def _need(record: dict[str, Any], key: str, where: str) -> Any:
    if key not in record:
        raise ValueError(f"{where}: missing field {key!r}")
    return record[key]


def load_scene_truth(root: Path | str, scene_name: str) -> SceneTruth:
    """Load DIR/synth/truth/<scene_name>.json; paths come back absolute under `root`."""
    path = truth_path(root, scene_name)
    if not path.is_file():
        raise FileNotFoundError(f"no ground-truth sidecar for scene {scene_name!r}: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    if data.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: format_version {data.get('format_version')!r}, expected {FORMAT_VERSION}")
    frames = _need(data, "frames", str(path))
    root = Path(root)
    objects: list[list[FrameObject]] = []
    for k, fr in enumerate(frames):
        where = f"{path} frames[{k}]"
        objs = []
        for ob in _need(fr, "objects", where):
            bbox = ob.get("bbox_full")
            ann = ob.get("annotation_token")
            objs.append(FrameObject(int(ob["index"]), str(ob["instance_token"]), None if ann is None else str(ann),
                                    str(ob["category"]),
                                    np.array(ob["translation"], float), np.array(ob["size"], float),
                                    np.array(ob["rotation"], float), int(ob["visible_px"]), int(ob["full_px"]),
                                    tuple(bbox) if bbox is not None else None))  # type: ignore[arg-type]
        objects.append(objs)
    lanes = data["lanes"]
    return SceneTruth(
        scene_name=str(_need(data, "scene_name", str(path))),
        scene_token=str(_need(data, "scene_token", str(path))),
        labels={k: str(v) for k, v in _need(data, "labels", str(path)).items()},
        fps=float(_need(data, "fps", str(path))),
        sample_data_tokens=[str(_need(f, "sample_data_token", str(path))) for f in frames],
        timestamps=np.array([int(_need(f, "timestamp", str(path))) for f in frames], dtype=np.int64),
        is_key_frame=np.array([bool(f["is_key_frame"]) for f in frames]),
        image_paths=[root / f["image"] for f in frames],
        mask_paths=[root / f["mask"] for f in frames],
        ego_speed=np.array([f["ego"]["speed"] for f in frames], dtype=float),
        ego_yaw_rate=np.array([f["ego"]["yaw_rate"] for f in frames], dtype=float),
        ego_accel=np.array([f["ego"]["accel"] for f in frames], dtype=float),
        lane_centres=np.array([f["lane_centres"] for f in frames], dtype=float).reshape(
            len(frames), len(lanes["directions"]), -1, 3),
        lane_directions=np.array(lanes["directions"], dtype=int),
        road_edges=np.array([f["road_edges"] for f in frames], dtype=float).reshape(len(frames), 2, -1, 3),
        instance_tokens={int(k): str(v) for k, v in _need(data, "instances", str(path)).items()},
        instance_categories={int(k): str(v) for k, v in _need(data, "instance_categories", str(path)).items()},
        objects=objects,
    )
