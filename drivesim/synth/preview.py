"""preview.png: a grid of key frames with their annotated 3D boxes drawn, for people to look at.

Boxes go through the devkit's own `Box` and `view_points` (as `NuScenes.get_sample_data` would), so
the preview shows what a nuScenes user gets from the tables.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
from nuscenes.utils.data_classes import Box
from nuscenes.utils.geometry_utils import BoxVisibility, box_in_image
from pyquaternion import Quaternion

from drivesim.synth.nuscenes_writer import NuScenesTables

log = logging.getLogger(__name__)

PREVIEW_FILE = "preview.png"
_COLOURS = {"vehicle.car": (255, 158, 0), "vehicle.truck": (255, 99, 71), "vehicle.bus.rigid": (255, 69, 0),
            "vehicle.bicycle": (220, 20, 60), "human.pedestrian.adult": (0, 0, 230)}


def _boxes_in_camera(tables: NuScenesTables, sd: dict, by_token: dict) -> list[Box]:
    pose = by_token["ego_pose"][sd["ego_pose_token"]]
    calib = by_token["calibrated_sensor"][sd["calibrated_sensor_token"]]
    category = {c["token"]: c["name"] for c in tables.tables["category"]}
    instance = by_token["instance"]
    boxes = []
    for ann in tables.tables["sample_annotation"]:
        if ann["sample_token"] != sd["sample_token"]:
            continue
        name = category[instance[ann["instance_token"]]["category_token"]]
        box = Box(ann["translation"], ann["size"], Quaternion(ann["rotation"]), name=name)
        box.translate(-np.array(pose["translation"]))
        box.rotate(Quaternion(pose["rotation"]).inverse)
        box.translate(-np.array(calib["translation"]))
        box.rotate(Quaternion(calib["rotation"]).inverse)
        boxes.append(box)
    return boxes


def write_preview(root: Path, version: str, tables: NuScenesTables, max_frames: int) -> Path:
    """Tile up to `max_frames` key frames (spread over all scenes) into root/preview.png."""
    by_token = {name: {r["token"]: r for r in tables.tables[name]}
                for name in ("ego_pose", "calibrated_sensor", "instance")}
    keys = [sd for sd in tables.tables["sample_data"] if sd["is_key_frame"]]
    if not keys:
        raise ValueError("no key frames to preview")
    pick = np.unique(np.linspace(0, len(keys) - 1, min(max_frames, len(keys))).round().astype(int))
    tiles = []
    for i in pick:
        sd = keys[int(i)]
        image = cv2.imread(str(root / sd["filename"]), cv2.IMREAD_COLOR)
        if image is None:
            raise FileNotFoundError(f"preview: cannot read {root / sd['filename']}")
        intrinsic = np.array(by_token["calibrated_sensor"][sd["calibrated_sensor_token"]]["camera_intrinsic"])
        for box in _boxes_in_camera(tables, sd, by_token):
            if box_in_image(box, intrinsic, (sd["width"], sd["height"]), vis_level=BoxVisibility.ANY):
                rgb = _COLOURS.get(box.name, (255, 255, 255))  # render_cv2 takes RGB and flips it for BGR
                box.render_cv2(image, view=intrinsic, normalize=True, colors=(rgb, rgb, rgb), linewidth=1)
        tiles.append(image)
    cols = 2 if len(tiles) > 1 else 1
    while len(tiles) % cols:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.hstack(tiles[r:r + cols]) for r in range(0, len(tiles), cols)]
    grid = np.vstack(rows)
    path = root / PREVIEW_FILE
    ok, buf = cv2.imencode(".png", grid, [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:
        raise RuntimeError(f"could not encode {path}")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(buf.tobytes())
    tmp.replace(path)
    log.debug("preview of %d frames written", len(pick))
    return path
