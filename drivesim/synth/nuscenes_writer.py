"""Collects the nuScenes tables of a synthetic dataset and writes them to DIR/<version>/*.json.

Conventions follow nuScenes: global frame in metres, quaternions [w, x, y, z], sizes [width, length,
height], timestamps in microseconds, key frames at 2 Hz with sweeps between them whose `sample_token`
is the *next* key frame's (what the devkit's box interpolation expects).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from drivesim.synth.agents import CLASSES
from drivesim.synth.jsonio import dump
from drivesim.synth.tokens import make_token

CHANNEL = "CAM_FRONT"
ATTRIBUTES = {
    "vehicle.moving": "Vehicle is moving.", "vehicle.stopped": "Vehicle, with a driver, is temporarily stationary.",
    "vehicle.parked": "Vehicle is stationary with no driver inside.",
    "cycle.with_rider": "There is someone riding the bicycle.", "cycle.without_rider": "No one rides the bicycle.",
    "pedestrian.moving": "The human is moving.", "pedestrian.standing": "The human is standing.",
    "pedestrian.sitting_lying_down": "The human is sitting or lying down.",
}
# nuScenes visibility levels: fraction of the object visible
VISIBILITY = [("1", "v0-40", 0.0), ("2", "v40-60", 0.4), ("3", "v60-80", 0.6), ("4", "v80-100", 0.8)]
TABLES = ("attribute", "calibrated_sensor", "category", "ego_pose", "instance", "log", "map", "sample",
          "sample_annotation", "sample_data", "scene", "sensor", "visibility")


def visibility_token(fraction: float) -> str:
    token = "1"
    for tok, _level, lo in VISIBILITY:
        if fraction >= lo:
            token = tok
    return token


@dataclass
class NuScenesTables:
    seed: int
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {t: [] for t in TABLES})

    def token(self, *parts: object) -> str:
        return make_token(self.seed, *parts)

    def add_static(self) -> None:
        """Sensor, categories, attributes and visibility levels: the same in every synthetic dataset."""
        self.tables["sensor"].append({"token": self.token("sensor", CHANNEL), "channel": CHANNEL,
                                      "modality": "camera"})
        for kind, (name, *_sizes) in sorted(CLASSES.items()):
            self.tables["category"].append({"token": self.token("category", name), "name": name,
                                            "description": f"synthetic {kind}"})
        for name, text in sorted(ATTRIBUTES.items()):
            self.tables["attribute"].append({"token": self.token("attribute", name), "name": name,
                                             "description": text})
        for tok, level, lo in VISIBILITY:
            self.tables["visibility"].append({"token": tok, "level": level,
                                              "description": f"visibility of at least {int(lo * 100)}%"})

    def category_token(self, name: str) -> str:
        return self.token("category", name)

    def attribute_token(self, name: str) -> str:
        return self.token("attribute", name)

    def write(self, root: Path, version: str) -> None:
        for name in TABLES:
            dump(root / version / f"{name}.json", self.tables[name])


def link_chain(records: list[dict[str, Any]]) -> None:
    """Fill prev/next of consecutive records (already in time order)."""
    for i, rec in enumerate(records):
        rec["prev"] = records[i - 1]["token"] if i > 0 else ""
        rec["next"] = records[i + 1]["token"] if i + 1 < len(records) else ""


def write_map(root: Path, filename: str, road_xy: list[np.ndarray], resolution: float) -> None:
    """Drivable-area mask (255 on the road) in the devkit's MapMask layout: pixel = (x, H - y) / res."""
    path = root / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    pts = np.concatenate(road_xy)
    margin = int(round(20.0 / resolution))
    width = int(np.ceil(pts[:, 0].max() / resolution)) + margin
    height = int(np.ceil(pts[:, 1].max() / resolution)) + margin
    mask = np.zeros((height, width), dtype=np.uint8)
    for poly in road_xy:
        px = np.stack([poly[:, 0] / resolution, height - poly[:, 1] / resolution], axis=1)
        cv2.fillPoly(mask, [np.round(px).astype(np.int32)], (255,))
    ok, buf = cv2.imencode(".png", mask, [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:
        raise RuntimeError(f"could not encode map {path}")
    path.write_bytes(buf.tobytes())
