"""A scenario as plain data (exact floats) for the simulator's `state_dict`, and back."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np

from drivesim.scenario.spec import Agent, CameraSpec, Keys, Scenario


def _keys(keys: Keys | None) -> list[list[float]] | None:
    if keys is None:
        return None
    return np.concatenate([keys.times[:, None], keys.values], axis=1).tolist()


def _from_keys(rows: list[list[float]] | None) -> Keys | None:
    if rows is None:
        return None
    arr = np.asarray(rows, dtype=np.float64)
    return Keys(arr[:, 0].copy(), arr[:, 1:].copy())


def scenario_to_dict(s: Scenario) -> dict[str, Any]:
    return {
        "name": s.name, "seconds": s.seconds, "labels": dict(s.labels), "text": s.text, "speed": _keys(s.speed),
        "yaw_rate": _keys(s.yaw_rate), "camera": asdict(s.camera) if s.camera is not None else None,
        "start": s.start, "source": s.source,
        "agents": [{"id": a.id, "cls": a.cls, "size": list(a.size), "track": _keys(a.track),
                    "image_track": _keys(a.image_track)} for a in s.agents],
    }


def _tuple_matrix(m: Any) -> tuple[tuple[float, ...], ...] | None:
    return None if m is None else tuple(tuple(float(x) for x in row) for row in m)


def scenario_from_dict(d: dict[str, Any]) -> Scenario:
    cam = d.get("camera")
    camera = None if cam is None else CameraSpec(
        intrinsics=_tuple_matrix(cam["intrinsics"]), size=tuple(cam["size"]) if cam["size"] else None,
        extrinsics=_tuple_matrix(cam["extrinsics"]), horizontal_fov_deg=cam["horizontal_fov_deg"],
        mount_height_m=float(cam["mount_height_m"]), mount_forward_m=float(cam["mount_forward_m"]),
        pitch_deg=float(cam["pitch_deg"]))
    agents = tuple(Agent(id=str(a["id"]), cls=str(a["cls"]), size=(float(a["size"][0]), float(a["size"][1]),
                                                                     float(a["size"][2])),
                         track=_from_keys(a["track"]), image_track=_from_keys(a["image_track"]))
                   for a in d["agents"])
    return Scenario(name=str(d["name"]), seconds=d["seconds"], labels=dict(d["labels"]), text=d["text"],
                    speed=_from_keys(d["speed"]), yaw_rate=_from_keys(d["yaw_rate"]), agents=agents, camera=camera,
                    start=d["start"], source=str(d["source"]))
