"""Render one scene's frames and record its nuScenes rows, instance masks and ground-truth sidecar."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from drivesim.config.synth import SynthConfig
from drivesim.synth.agents import CYCLE, PARKED
from drivesim.synth.camera import Camera
from drivesim.synth.geometry import matrix_to_quaternion, yaw_quaternion
from drivesim.synth.jsonio import dump
from drivesim.synth.nuscenes_writer import CHANNEL, NuScenesTables, link_chain, visibility_token, write_map
from drivesim.synth.raster import FrameRender, Rasteriser
from drivesim.synth.scene import Scene, frame_count
from drivesim.synth.truth import FORMAT_VERSION, MASK_DIR, TRUTH_DIR

log = logging.getLogger(__name__)

ANNOTATION_RANGE_M = 60.0  # agents annotated around the ego (nuScenes annotates within ~50-70 m)
LANE_STATIONS = np.arange(-10.0, 100.0 + 1e-6, 5.0)  # arc lengths (m) of lane polyline points around the ego
BASE_TIMESTAMP_US = 1_600_000_000_000_000
SCENE_SLOT_US = 1_000_000_000  # 1000 s
MAP_RESOLUTION_M = 0.1  # the devkit's MapMask reads every map PNG as 0.1 m per pixel (nuScenes' native)
MAP_BEHIND_M, MAP_AHEAD_M = 80.0, 230.0  # the map covers the road the ego drives and sees (200 m ahead)


def scene_start_us(index: int, n_frames: int, fps: float) -> int:
    """First timestamp of scene `index`: scenes sit in 1000 s slots (several when a scene is longer), so
    no two scenes of a dataset overlap in time."""
    slots = int(np.ceil(((n_frames - 1) / fps * 1e6 + 60_000_000) / SCENE_SLOT_US))
    return BASE_TIMESTAMP_US + index * slots * SCENE_SLOT_US


def _encode(ext: str, array: np.ndarray, params: list[int]) -> bytes:
    ok, buf = cv2.imencode(ext, array, params)
    if not ok:
        raise RuntimeError(f"could not encode a {ext} image")
    return buf.tobytes()


def _r(values: np.ndarray | list[float] | float, digits: int = 4) -> Any:
    """Rounded plain-Python numbers (lists for arrays) for the compact truth sidecar."""
    return np.round(np.asarray(values, dtype=float), digits).tolist()


def _attribute(scene: Scene, i: int, speed: float) -> str:
    agent = scene.agents[i]
    if agent.kind == "pedestrian":
        return "pedestrian.moving" if speed > 0.2 else "pedestrian.standing"
    if agent.behaviour == CYCLE or agent.kind == "cyclist":
        return "cycle.with_rider"
    if agent.behaviour == PARKED:
        return "vehicle.parked"
    return "vehicle.moving" if speed > 0.5 else "vehicle.stopped"


class SceneWriter:
    """Writes scene `scene` under `root`; `offset` moves world coordinates into the (positive) global frame."""

    def __init__(self, root: Path, cfg: SynthConfig, tables: NuScenesTables, camera: Camera) -> None:
        self.root, self.cfg, self.tables, self.camera = root, cfg, tables, camera

    def write(self, scene: Scene) -> None:
        t, cfg = self.tables, self.cfg
        name = scene.name
        _, per_key = frame_count(cfg.seconds, cfg.fps, cfg.keyframe_hz)
        map_polys = self._map_polygons(scene)
        corner = np.concatenate(map_polys).min(axis=0)
        offset = np.array([20.0 - corner[0], 20.0 - corner[1], 0.0])  # global x, y > 0 around the drive (map)
        scene_tok, log_tok, map_tok = t.token("scene", name), t.token("log", name), t.token("map", name)
        calib_tok = t.token("calibrated_sensor", name, CHANNEL)
        cam = self.camera
        rot = cam.cam_to_ego[:3, :3]
        t.tables["calibrated_sensor"].append({
            "token": calib_tok, "sensor_token": t.token("sensor", CHANNEL),
            "translation": cam.cam_to_ego[:3, 3].tolist(), "rotation": matrix_to_quaternion(rot),
            "camera_intrinsic": cam.intrinsic.tolist()})
        map_file = f"maps/{map_tok}.png"
        write_map(self.root, map_file, [poly + offset[:2] for poly in map_polys], MAP_RESOLUTION_M)
        t.tables["log"].append({"token": log_tok, "logfile": f"{name}-log", "vehicle": "drivesim-ego",
                                "date_captured": "2020-09-13", "location": "drivesim-procedural"})
        t.tables["map"].append({"token": map_tok, "log_tokens": [log_tok], "category": "semantic_prior",
                                "filename": map_file})
        rast = Rasteriser(scene, cam)
        n = scene.n_frames
        start = scene_start_us(scene.index, n, cfg.fps)
        stamps = [start + int(round(k * 1e6 / cfg.fps)) for k in range(n)]
        keys = list(range(0, n, per_key))
        sample_toks = [t.token("sample", name, k) for k in keys]
        samples = [{"token": tok, "timestamp": stamps[k], "scene_token": scene_tok}
                   for tok, k in zip(sample_toks, keys)]
        link_chain(samples)
        t.tables["sample"].extend(samples)
        instance_toks = [t.token("instance", name, i) for i in range(len(scene.agents))]
        ann_by_instance: dict[int, list[dict[str, Any]]] = {}
        sds: list[dict[str, Any]] = []
        frames_truth: list[dict[str, Any]] = []
        mask_params = [cv2.IMWRITE_PNG_COMPRESSION, 1]
        small_ids = len(scene.agents) < 256  # 8-bit masks encode twice as fast; 16-bit only when needed
        jpeg_params = [cv2.IMWRITE_JPEG_QUALITY, int(cfg.jpeg_quality)]
        for k in range(n):
            render = rast.render(k)
            is_key = k % per_key == 0
            folder = "samples" if is_key else "sweeps"
            stem = f"{name}__{CHANNEL}__{stamps[k]}"
            image_rel = f"{folder}/{CHANNEL}/{stem}.jpg"
            mask_rel = f"{MASK_DIR}/{CHANNEL}/{stem}.png"
            (self.root / image_rel).write_bytes(_encode(".jpg", render.image[..., ::-1], jpeg_params))
            mask = render.mask.astype(np.uint8) if small_ids else render.mask
            (self.root / mask_rel).write_bytes(_encode(".png", mask, mask_params))
            sd_tok = t.token("sample_data", name, k)
            pose_tok = t.token("ego_pose", name, k)
            pose = render.ego_to_world
            t.tables["ego_pose"].append({"token": pose_tok, "timestamp": stamps[k],
                                         "translation": (pose[:3, 3] + offset).tolist(),
                                         "rotation": matrix_to_quaternion(pose[:3, :3])})
            sample_idx = min(-(-k // per_key), len(keys) - 1)  # this key frame, or the next one for sweeps
            sds.append({"token": sd_tok, "sample_token": sample_toks[sample_idx], "ego_pose_token": pose_tok,
                        "calibrated_sensor_token": calib_tok, "timestamp": stamps[k], "fileformat": "jpg",
                        "is_key_frame": is_key, "height": cam.height, "width": cam.width,
                        "filename": image_rel})
            objects = self._objects(scene, k, render, offset, instance_toks)
            if is_key:
                for ob in objects:
                    ann = {"token": t.token("sample_annotation", name, k, ob["index"]),
                           "sample_token": sample_toks[sample_idx], "instance_token": ob["instance_token"],
                           "visibility_token": visibility_token(ob["visible_px"] / max(ob["full_px"], 1)),
                           "attribute_tokens": [t.attribute_token(ob["attribute"])],
                           "translation": ob["translation"], "size": ob["size"], "rotation": ob["rotation"],
                           "num_lidar_pts": ob["visible_px"], "num_radar_pts": 0}
                    ann_by_instance.setdefault(ob["index"] - 1, []).append(ann)
                    ob["annotation_token"] = ann["token"]
            frames_truth.append(self._frame_truth(scene, k, render, sd_tok, stamps[k], is_key, image_rel,
                                                  mask_rel, objects))
        link_chain(sds)
        t.tables["sample_data"].extend(sds)
        for i in sorted(ann_by_instance):
            anns = ann_by_instance[i]
            link_chain(anns)
            t.tables["sample_annotation"].extend(anns)
            agent = scene.agents[i]
            t.tables["instance"].append({"token": instance_toks[i], "category_token": t.category_token(agent.category),
                                         "nbr_annotations": len(anns), "first_annotation_token": anns[0]["token"],
                                         "last_annotation_token": anns[-1]["token"]})
        t.tables["scene"].append({"token": scene_tok, "log_token": log_tok, "nbr_samples": len(samples),
                                  "first_sample_token": samples[0]["token"], "last_sample_token": samples[-1]["token"],
                                  "name": name, "description": scene.description})
        lanes = scene.road.section.lane_centres()
        truth = {"format_version": FORMAT_VERSION, "scene_name": name, "scene_token": scene_tok,
                 "labels": {"time_of_day": scene.time_of_day, "weather": scene.weather,
                            "crowdedness": scene.crowdedness},
                 "fps": float(cfg.fps), "global_offset": _r(offset),
                 "lanes": {"offsets_m": [float(d) for d, _ in lanes], "directions": [int(di) for _, di in lanes],
                           "stations_m": _r(LANE_STATIONS)},
                 "instances": {str(i + 1): instance_toks[i] for i in range(len(scene.agents))},
                 "instance_categories": {str(i + 1): a.category for i, a in enumerate(scene.agents)},
                 "frames": frames_truth}
        if scene.livery is not None:  # only then: a world without a livery writes what it always wrote
            truth["livery"] = {"name": cfg.world.livery,
                               "instances": [i + 1 for i, w in enumerate(scene.wears_livery) if w]}
        dump(self.root / TRUTH_DIR / f"{name}.json", truth, compact=True)
        log.info("scene %s: %d frames, %d annotated agents (%s)", name, n, len(ann_by_instance), scene.description)

    def _map_polygons(self, scene: Scene) -> list[np.ndarray]:
        """Drivable area (kerb to kerb) along the stretch the ego drives, as world (x, y) polygons."""
        road, sec = scene.road, scene.road.section
        lo = max(float(scene.traj.ego_s.min()) - MAP_BEHIND_M, float(road.s[0]))
        hi = min(float(scene.traj.ego_s.max()) + MAP_AHEAD_M, float(road.s[-1]))
        s = np.arange(lo, hi + 1e-6, 2.0)
        chunks = []
        for a in range(0, max(len(s) - 1, 1), 20):
            seg = s[a:min(a + 21, len(s))]
            left = road.points(seg, sec.left_kerb)[:, :2]
            right = road.points(seg, sec.right_kerb)[:, :2]
            chunks.append(np.concatenate([left, right[::-1]]))
        return chunks

    def _objects(self, scene: Scene, k: int, render: FrameRender, offset: np.ndarray,
                 instance_toks: list[str]) -> list[dict[str, Any]]:
        """Agents within ANNOTATION_RANGE_M of the ego or visible at frame k: exact boxes and pixel counts."""
        centres, yaws = scene.agent_boxes(k)
        ego_xyz = render.ego_to_world[:3, 3]
        seen = np.zeros(len(centres), dtype=bool)
        seen[[i for i, st in render.stats.items() if st.visible_px > 0]] = True
        near = np.flatnonzero((np.linalg.norm(centres - ego_xyz, axis=1) < ANNOTATION_RANGE_M) | seen)
        dt = 1.0 / scene.fps
        prev_c, _ = scene.agent_boxes(max(k - 1, 0))
        next_c, _ = scene.agent_boxes(min(k + 1, scene.n_frames - 1))
        span = dt * (min(k + 1, scene.n_frames - 1) - max(k - 1, 0))
        out = []
        for i in near:
            a = scene.agents[i]
            speed = float(np.linalg.norm(next_c[i] - prev_c[i]) / span) if span > 0 else 0.0
            st = render.stats.get(int(i))
            centre = centres[i] + offset + np.array([0.0, 0.0, a.height / 2.0])
            out.append({"index": int(i) + 1, "instance_token": instance_toks[i], "category": a.category,
                        "attribute": _attribute(scene, int(i), speed),
                        "translation": _r(centre, 6), "size": [a.width, a.length, a.height],
                        "rotation": _r(yaw_quaternion(float(yaws[i])), 8), "speed": speed,
                        "visible_px": st.visible_px if st else 0, "full_px": st.full_px if st else 0,
                        "annotation_token": None,  # set for key frames: the sample_annotation of this box
                        "bbox_full": list(st.bbox_full) if st else None})
        return out

    def _frame_truth(self, scene: Scene, k: int, render: FrameRender, sd_tok: str, stamp: int, is_key: bool,
                     image_rel: str, mask_rel: str, objects: list[dict[str, Any]]) -> dict[str, Any]:
        world_to_ego = np.linalg.inv(render.ego_to_world)
        s = scene.traj.ego_s[k] + LANE_STATIONS
        lanes = scene.road.section.lane_centres()
        offsets = np.array([d for d, _ in lanes] + [scene.road.section.right_kerb, scene.road.section.left_kerb])
        world = scene.road.points(s[None, :], offsets[:, None])  # (L + 2, K, 3)
        ego = world @ world_to_ego[:3, :3].T + world_to_ego[:3, 3]
        return {"index": k, "sample_data_token": sd_tok, "timestamp": stamp, "is_key_frame": is_key,
                "image": image_rel, "mask": mask_rel,
                "ego": {"speed": _r(scene.traj.ego_speed[k], 6), "yaw_rate": _r(scene.traj.ego_yaw_rate[k], 6),
                        "accel": _r(scene.traj.ego_accel[k], 6)},
                "lane_centres": _r(ego[:len(lanes)], 3), "road_edges": _r(ego[len(lanes):], 3),
                "objects": [{key: ob[key] for key in ("index", "instance_token", "annotation_token", "category",
                                                     "translation", "size", "rotation", "visible_px", "full_px",
                                                     "bbox_full")}
                            for ob in objects]}
