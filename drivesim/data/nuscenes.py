"""nuScenes (and the synthetic world, which writes the same format) as a map-style clip dataset.

Built on the devkit: `NuScenes.get_sample_data` gives each frame's boxes in the camera frame
(interpolated between the surrounding key frames for sweeps), `view_points` projects them and the
devkit's 2D-box export (`post_process_coords`) clips the projection to the image.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import torch
from nuscenes.scripts.export_2d_annotations_as_json import post_process_coords
from nuscenes.utils.geometry_utils import BoxVisibility, transform_matrix, view_points
from pyquaternion import Quaternion
from shapely.geometry import MultiPoint
from shapely.geometry import box as shapely_box
from torch.utils.data import Dataset

from drivesim.data.clip import Camera, Clip, EgoMotion, Source
from drivesim.data.ego import PoseTrack, ego_motion, yaw_from_quaternion
from drivesim.data.errors import DataError, check_on_error
from drivesim.data.labels import class_index, parse_description
from drivesim.data.nuscenes_db import (
    CameraStream,
    camera_streams,
    clip_starts,
    default_max_gap,
    open_nuscenes,
    table_problems,
)
from drivesim.data.splits import split_scenes
from drivesim.data.transforms import ResizeCrop

log = logging.getLogger(__name__)


def project_box_2d(corners: np.ndarray, intrinsic: np.ndarray, width: int, height: int) -> tuple[float, ...] | None:
    """The devkit's 2D box of camera-frame corners (3, 8): corners in front of the camera,
    projected, convex hull intersected with the image canvas; None if it misses the image."""
    in_front = corners[:, corners[2] > 0]
    if in_front.shape[1] == 0:
        return None
    points = view_points(in_front, intrinsic, normalize=True).T[:, :2]
    inside = _box_inside_canvas(points, width, height)
    if inside is not None:
        return inside
    uv = points.tolist()
    # The devkit's helper assumes the hull meets the canvas in an area; a hull touching it in a
    # line or a point (or a degenerate hull) has no 2D box.
    hull = MultiPoint(uv).convex_hull
    canvas = shapely_box(0, 0, width, height)
    if not hull.intersects(canvas) or hull.intersection(canvas).geom_type != "Polygon":
        return None
    return post_process_coords(uv, imsize=(width, height))


def _box_inside_canvas(points: np.ndarray, width: int, height: int) -> tuple[float, ...] | None:
    """The devkit's 2D box when the projected points lie strictly inside the canvas and span an area: then the
    hull's intersection with the canvas is the hull itself, whose extremes are the points' own (the same floats).
    Most boxes are of this kind, and the shapely route costs ~1.5 ms a box (half of loading a synthetic frame);
    None sends every other case (crossing the border, touching it, degenerate) down the devkit's route."""
    u, v = points[:, 0], points[:, 1]
    if not (u.min() > 0 and v.min() > 0 and u.max() < width and v.max() < height):
        return None
    d = points[1:] - points[0]
    if not np.any(d[:, 0, None] * d[None, :, 1] - d[:, 1, None] * d[None, :, 0]):  # collinear: no area
        return None
    return float(u.min()), float(v.min()), float(u.max()), float(v.max())


_NO_BOXES = (np.zeros((0, 4), np.float64), np.zeros((0, 8, 3), np.float32), np.zeros(0, np.int64),
             np.zeros(0, np.int64), np.zeros(0, bool))

VISIBILITY_LEVELS = {"v0-40": 1, "v40-60": 2, "v60-80": 3, "v80-100": 4}  # the devkit's bins of visible area


def visibility_levels(rows: list[dict], where: Path) -> dict[str, int]:
    """visibility token -> level 1-4, read from each row's `level` (any writer's tokens), else a digit token."""
    levels = {}
    for row in rows:
        token, level = str(row.get("token", "")), row.get("level")
        if level in VISIBILITY_LEVELS:
            levels[token] = VISIBILITY_LEVELS[level]
        elif token.isdigit() and 1 <= int(token) <= 4:
            levels[token] = int(token)
        else:
            raise DataError(where, f"visibility {token!r}: level {level!r} is none of {', '.join(VISIBILITY_LEVELS)}")
    return levels


class NuScenesClips(Dataset):
    """Clips of `frames` frames at `fps` from `camera`, resized and centre-cropped to `size` = (H, W).

    `split`: None (every scene), "train" / "val" (official for v1.0-trainval / v1.0-mini, seeded
    otherwise) or any devkit split name. `min_visibility`: least nuScenes visibility level ('1'-'4')
    a box needs. `max_gap`: the farthest (s) a target time may be from its frame; default
    max(0.5 / fps, 0.75 / 12 Hz) tolerates sweep jitter.
    """

    def __init__(
        self,
        root: str | Path,
        version: str = "v1.0-trainval",
        camera: str = "CAM_FRONT",
        frames: int = 4,
        fps: float = 3.0,
        size: tuple[int, int] | list[int] = (128, 256),
        split: str | None = None,
        on_error: str = "raise",
        stride: float | None = None,
        max_gap: float | None = None,
        min_visibility: int = 1,
        horizon: int = 4,
        waypoint_dt: float = 0.5,
        seed: int = 0,
        val_fraction: float = 0.2,
        with_boxes: bool = True,
    ) -> None:
        if frames < 1 or fps <= 0:
            raise ValueError(f"frames must be >= 1 and fps > 0, got frames={frames}, fps={fps}")
        self.root, self.version, self.camera = Path(root), version, camera
        self.frames, self.fps = int(frames), float(fps)
        self.size = (int(size[0]), int(size[1]))
        self.on_error = check_on_error(on_error)
        self.min_visibility, self.horizon, self.waypoint_dt = min_visibility, horizon, waypoint_dt
        # False: frames, ego motion and camera only, no boxes - projecting every box to 2D costs about 60 ms a
        # frame, more than reading it (a side-by-side video needs the pictures only).
        self.with_boxes = with_boxes
        self.nusc = open_nuscenes(self.root, version)
        for problem in table_problems(self.nusc):  # under skip, the clips that meet the record fail alone
            if self.on_error == "raise":
                raise problem
            log.warning("%s", problem)
        streams = camera_streams(self.nusc, camera, skip_bad=self.on_error == "skip")
        names = split_scenes(version, [s["name"] for s in self.nusc.scene], split, seed, val_fraction)
        self.streams = [streams[n] for n in names if n in streams]
        self.max_gap = float(max_gap) if max_gap is not None else default_max_gap(self.fps)
        stride = float(stride) if stride else self.frames / self.fps
        self.items: list[tuple[int, list[int]]] = []
        for k, stream in enumerate(self.streams):
            self.items.extend((k, picks) for picks in clip_starts(stream, self.frames, self.fps, stride, self.max_gap))
        self.skipped: list[str] = []
        self._tracks: dict[int, PoseTrack] = {}
        self._instances = {tok: i for i, tok in enumerate(r["token"] for r in self.nusc.instance)}
        self._visibility = (visibility_levels(self.nusc.visibility, self.root / version / "visibility.json")
                            if min_visibility > 1 else {})
        missing = sum(s.missing_sweeps for s in self.streams)
        if missing:
            log.warning("%s: %d %s sweep image(s) missing, left out (clips use the frames present)",
                        self.root, missing, camera)
        if not self.streams:
            log.warning("%s: split %s has no scenes with %s", self.root / version, split, camera)
        elif not self.items and on_error == "raise":
            raise DataError(self.root / version, f"no clips of {frames} frames at {fps} fps from {camera} in split {split}")

    def __len__(self) -> int:
        return len(self.items)

    def _visibility_of(self, ann: dict) -> int:
        token = str(ann.get("visibility_token", ""))
        if token not in self._visibility:
            raise DataError(self.root / self.version / "sample_annotation.json",
                            f"annotation {ann.get('token')}: visibility_token {token!r} is not in visibility.json")
        return self._visibility[token]

    def __getitem__(self, i: int) -> Clip | None:
        k, picks = self.items[i]
        try:
            return self._clip(self.streams[k], k, picks)
        except (DataError, KeyError, OSError, cv2.error) as exc:  # read, decode and table errors only
            where = self.root / self.version / "sample_data.json"
            scene = self.streams[k].scene_name
            what = (f"a reference to {exc.args[0]!r} names no record (malformed table)" if isinstance(exc, KeyError)
                    else f"{exc.__class__.__name__}: {exc}")
            error = exc if isinstance(exc, DataError) else DataError(
                where, f"scene {scene}, frame {self.streams[k].tokens[picks[0]]}: {what}")
            if self.on_error == "raise":
                raise error from exc
            log.warning("skipping clip %d: %s", i, error)
            return None

    def _track(self, k: int) -> PoseTrack:
        """The scene's ego poses at every camera frame (sweeps included), cached per scene; timed by
        the camera frames' timestamps, the clock the clip's frames are queried on."""
        if k not in self._tracks:
            records = [self.nusc.get("sample_data", t) for t in self.streams[k].tokens]
            poses = [self.nusc.get("ego_pose", sd["ego_pose_token"]) for sd in records]
            self._tracks[k] = PoseTrack(
                times=np.array([sd["timestamp"] for sd in records], np.float64) / 1e6,
                positions=np.array([p["translation"] for p in poses], np.float64),
                yaws=np.array([yaw_from_quaternion(np.asarray(p["rotation"])) for p in poses]),
            )
        return self._tracks[k]

    def _image(self, sd: dict) -> np.ndarray:
        path = Path(self.nusc.get_sample_data_path(sd["token"]))
        if not path.is_file():
            raise DataError(path, "image file is missing")
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise DataError(path, "image does not decode (corrupt or not an image)")
        if image.shape[:2] != (sd["height"], sd["width"]):
            raise DataError(path, f"image is {image.shape[1]}x{image.shape[0]}, sample_data says {sd['width']}x{sd['height']}")
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def _boxes(self, sd: dict, tf: ResizeCrop) -> tuple[np.ndarray, ...]:  # 2D, 3D corners, class, instance, valid
        _, boxes, intrinsic = self.nusc.get_sample_data(sd["token"], box_vis_level=BoxVisibility.ANY)
        sample = self.nusc.get("sample", sd["sample_token"])
        interpolated: set[str] = set()
        # A sweep past its sample (after a scene's last key frame) gets that key frame's boxes, held.
        if not sd["is_key_frame"] and sample["prev"] and sd["timestamp"] <= sample["timestamp"]:
            prev = self.nusc.get("sample", sample["prev"])
            interpolated = {self.nusc.get("sample_annotation", a)["instance_token"] for a in prev["anns"]}
        rows: list[tuple] = []
        for box in boxes:
            ann = self.nusc.get("sample_annotation", box.token)
            if self.min_visibility > 1 and self._visibility_of(ann) < self.min_visibility:
                continue
            corners = box.corners()
            xyxy = project_box_2d(corners, intrinsic, sd["width"], sd["height"])
            if xyxy is None:
                continue
            valid = bool(sd["is_key_frame"]) or ann["instance_token"] in interpolated
            rows.append((xyxy, corners.T, class_index(box.name), self._instances.get(ann["instance_token"], -1), valid))
        b2 = np.array([r[0] for r in rows], np.float64).reshape(-1, 4)
        out, keep = tf.boxes(b2)
        return (
            out[keep],
            np.array([r[1] for r in rows], np.float32).reshape(-1, 8, 3)[keep],
            np.array([r[2] for r in rows], np.int64)[keep],
            np.array([r[3] for r in rows], np.int64)[keep],
            np.array([r[4] for r in rows], bool)[keep],
        )

    def _clip(self, stream: CameraStream, k: int, picks: list[int]) -> Clip:
        records = [self.nusc.get("sample_data", stream.tokens[p]) for p in picks]
        first = records[0]
        if first["width"] <= 0 or first["height"] <= 0:
            raise DataError(self.nusc.get_sample_data_path(first["token"]), f"zero-size frames ({first['width']}x{first['height']})")
        tf = ResizeCrop(first["height"], first["width"], *self.size)
        images, fields = [], []
        for sd in records:
            if (sd["height"], sd["width"]) != (tf.src_h, tf.src_w):
                raise DataError(self.nusc.get_sample_data_path(sd["token"]), "frame size changes within the scene")
            images.append(tf.image(self._image(sd)))
            fields.append(self._boxes(sd, tf) if self.with_boxes else _NO_BOXES)
        cs = self.nusc.get("calibrated_sensor", first["calibrated_sensor_token"])
        intrinsic = np.asarray(cs["camera_intrinsic"], np.float64)
        extrinsic = transform_matrix(cs["translation"], Quaternion(cs["rotation"]))
        stamps = np.array([sd["timestamp"] for sd in records], np.float64) / 1e6
        ego: EgoMotion = ego_motion(self._track(k), stamps, self.horizon, self.waypoint_dt)
        scene = self.nusc.get("scene", stream.scene_token)
        return Clip(
            frames=torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(),
            fps=self.fps,
            boxes_2d=[f[0] for f in fields], boxes_3d=[f[1] for f in fields], classes=[f[2] for f in fields],
            instance_ids=[f[3] for f in fields], valid=[f[4] for f in fields],
            ego=ego,
            labels=parse_description(scene.get("description")),
            camera=Camera(intrinsics=tf.intrinsics(intrinsic) if intrinsic.size == 9 else None, extrinsics=extrinsic),
            source=Source(
                dataset=f"nuscenes:{self.version}", scene=stream.scene_name,
                timestamps=stream.times[picks].astype(np.float64), frame_ids=[sd["token"] for sd in records],
                description=str(scene.get("description") or ""),
            ),
        )
