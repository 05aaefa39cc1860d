"""Test data made by the tests themselves.

Videos (PyAV): every frame shows its own number as a grey level, so a test can tell exactly which
source frame a clip picked; the left edge carries a white bar so the display rotation can be checked.

nuScenes (independent of drivesim.synth): 12 Hz CAM_FRONT frames with jittered timestamps, key
frames every 6th frame, the ego driving a constant-speed arc and two annotated objects; sweeps point
at the next key frame's sample.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from pyquaternion import Quaternion

CODECS = {  # name -> (encoder, container suffix, pixel format)
    "h264": ("libx264", ".mp4", "yuv420p"),
    "hevc": ("libx265", ".mkv", "yuv420p"),
    "vp9": ("libvpx-vp9", ".webm", "yuv420p"),
    "mjpeg": ("mjpeg", ".avi", "yuvj420p"),
    "h264-mov": ("libx264", ".mov", "yuv420p"),
}
BAR = 6  # width of the white bar on the left edge of each source frame


def grey(i: int) -> int:
    return 16 + 12 * (i % 20)


def frame_number(image: np.ndarray) -> int:
    """Inverse of grey() from an (H, W, 3) or (3, H, W) frame's centre."""
    hwc = image if image.shape[-1] == 3 else np.moveaxis(np.asarray(image), 0, -1)
    h, w = hwc.shape[:2]
    centre = hwc[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3].astype(np.float64).mean()
    return int(round((centre - 16) / 12))


def decoded_times(path: Path) -> list[float]:
    """Presentation times (s from the first frame) of every frame of a full sequential decode."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stamps = [float(f.pts * stream.time_base) for f in container.decode(stream)]
    return [t - stamps[0] for t in stamps]


def make_frame(i: int, height: int, width: int, noise: bool = False) -> np.ndarray:
    image = np.full((height, width, 3), grey(i), np.uint8)
    if noise:  # texture, so the file has real bytes to damage
        jitter = np.random.default_rng(i).integers(-10, 11, (height, width, 3))
        image = (image.astype(np.int64) + jitter).clip(0, 255).astype(np.uint8)
    image[:, :BAR] = 255
    return image


def write_video(
    path: Path,
    codec: str = "h264",
    frames: int = 24,
    fps: float = 12.0,
    size: tuple[int, int] = (64, 96),
    times: Sequence[float] | None = None,
    rotation: int = 0,
    gop: int | None = None,
    noise: bool = False,
    time_base: Fraction = Fraction(1, 1000),
    options: dict[str, str] | None = None,
    audio_seconds: float = 0.0,
    offset: float = 0.0,
    container_options: dict[str, str] | None = None,
) -> Path:
    """Encode `frames` frames (or one per entry of `times`, seconds: variable frame rate).

    `options`: encoder options (e.g. B-frames, GOP); `audio_seconds` > 0 adds a silent AAC track
    first in the file; `offset` shifts every timestamp (a file whose first frame is not at 0)."""
    encoder, _, pix_fmt = CODECS[codec]
    height, width = size
    stamps = [t + offset for t in (list(times) if times is not None else [i / fps for i in range(frames)])]
    tb = time_base
    with av.open(str(path), "w", options=container_options or {}) as container:
        audio = container.add_stream("aac", rate=48000) if audio_seconds > 0 else None
        stream = container.add_stream(encoder, rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.time_base = tb
        stream.codec_context.time_base = tb
        if gop is not None:
            stream.codec_context.gop_size = gop
        if encoder == "libx265":
            stream.codec_context.options = {"x265-params": "log-level=none"}
        if options:
            stream.codec_context.options = dict(options)
        if rotation:
            stream.set_display_rotation(rotation)
        if audio is not None:
            for k in range(0, int(48000 * audio_seconds), 1024):
                silence = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
                silence.sample_rate, silence.pts = 48000, k + int(round(offset * 48000))
                for packet in audio.encode(silence):
                    container.mux(packet)
            for packet in audio.encode():
                container.mux(packet)
        for i, t in enumerate(stamps):
            frame = av.VideoFrame.from_ndarray(make_frame(i, height, width, noise), format="rgb24")
            frame.pts = int(round(t / tb))
            frame.time_base = tb
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path

SPEED = 8.0  # m/s
YAW_RATE = 0.2  # rad/s
K = [[120.0, 0.0, 80.0], [0.0, 120.0, 45.0], [0.0, 0.0, 1.0]]
WIDTH, HEIGHT = 160, 90
# Camera looking forward from the ego frame: x forward, y left, z up -> OpenCV (x right, y down, z forward).
CAM_ROTATION = Quaternion(matrix=np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]))


def _tok(*parts: object) -> str:
    return "-".join(str(p) for p in parts)


def ego_pose(t: float) -> tuple[np.ndarray, float]:
    """World position and yaw of the ego at t seconds (an arc of radius SPEED / YAW_RATE)."""
    radius = SPEED / YAW_RATE
    yaw = YAW_RATE * t
    return np.array([radius * np.sin(yaw), radius * (1 - np.cos(yaw)), 0.0]), yaw


def write_nuscenes(root: Path, version: str = "v1.0-fixture", scenes: int = 2, seconds: float = 3.0,
                   seed: int = 0, descriptions: tuple[str, ...] = ("Night, rain, many peds", "blue sky"),
                   names: tuple[str, ...] = ()) -> Path:
    rng = np.random.default_rng(seed)
    tables: dict[str, list[dict]] = {k: [] for k in (
        "category", "attribute", "visibility", "instance", "sensor", "calibrated_sensor", "ego_pose",
        "log", "scene", "sample", "sample_data", "sample_annotation", "map")}
    tables["category"] = [{"token": "cat-car", "name": "vehicle.car", "description": ""},
                          {"token": "cat-ped", "name": "human.pedestrian.adult", "description": ""}]
    tables["visibility"] = [{"token": str(i), "level": lvl, "description": ""}
                            for i, lvl in enumerate(["v0-40", "v40-60", "v60-80", "v80-100"], 1)]
    tables["sensor"] = [{"token": "sensor-cam", "channel": "CAM_FRONT", "modality": "camera"}]
    tables["calibrated_sensor"] = [{"token": "cs-cam", "sensor_token": "sensor-cam", "translation": [1.5, 0.0, 1.5],
                                    "rotation": list(CAM_ROTATION.elements), "camera_intrinsic": K}]
    (root / "maps").mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / "maps" / "blank.png"), np.zeros((4, 4), np.uint8))
    tables["log"] = [{"token": "log-0", "logfile": "", "vehicle": "", "date_captured": "2026-01-01", "location": "synth"}]
    tables["map"] = [{"token": "map-0", "log_tokens": ["log-0"], "category": "", "filename": "maps/blank.png"}]
    (root / "samples" / "CAM_FRONT").mkdir(parents=True, exist_ok=True)
    (root / "sweeps" / "CAM_FRONT").mkdir(parents=True, exist_ok=True)
    n_frames = int(round(seconds * 12)) + 1
    for s in range(scenes):
        t0 = 1_000_000_000 + s * 100_000_000
        stamps = [t0 + int(round(i / 12 * 1e6)) + (int(rng.integers(-4000, 4000)) if i % 6 else 0) for i in range(n_frames)]
        keys = [i for i in range(n_frames) if i % 6 == 0]
        sample_tok = {i: _tok("sample", s, i) for i in keys}
        instances = [(_tok("inst", s, 0), "cat-car", np.array([15.0, 0.5, 0.8]), [1.8, 4.5, 1.6], "4"),
                     (_tok("inst", s, 1), "cat-ped", np.array([9.0, -2.5, 0.9]), [0.6, 0.6, 1.8], "2")]
        for j, (itok, cat, _, _, _) in enumerate(instances):
            tables["instance"].append({"token": itok, "category_token": cat, "nbr_annotations": len(keys),
                                       "first_annotation_token": _tok("ann", s, keys[0], j),
                                       "last_annotation_token": _tok("ann", s, keys[-1], j)})
        for n, i in enumerate(keys):
            t = (stamps[i] - t0) / 1e6
            pos, yaw = ego_pose(t)
            anns = []
            for j, (itok, _, offset, size, vis) in enumerate(instances):
                rot = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
                # Objects drift ahead of the ego so interpolation matters.
                world = pos + rot @ (offset + np.array([0.5 * t, 0.0, 0.0]))
                atok = _tok("ann", s, i, j)
                anns.append(atok)
                tables["sample_annotation"].append({
                    "token": atok, "sample_token": sample_tok[i], "instance_token": itok, "visibility_token": vis,
                    "attribute_tokens": [], "translation": world.tolist(), "size": size,
                    "rotation": list(Quaternion(axis=[0, 0, 1], angle=yaw + 0.1 * j).elements),
                    "prev": _tok("ann", s, keys[n - 1], j) if n else "",
                    "next": _tok("ann", s, keys[n + 1], j) if n + 1 < len(keys) else "",
                    "num_lidar_pts": 1, "num_radar_pts": 0})
            tables["sample"].append({"token": sample_tok[i], "timestamp": stamps[i], "scene_token": _tok("scene", s),
                                     "prev": sample_tok[keys[n - 1]] if n else "",
                                     "next": sample_tok[keys[n + 1]] if n + 1 < len(keys) else ""})
        for i in range(n_frames):
            t = (stamps[i] - t0) / 1e6
            pos, yaw = ego_pose(t)
            tables["ego_pose"].append({"token": _tok("pose", s, i), "timestamp": stamps[i], "translation": pos.tolist(),
                                       "rotation": list(Quaternion(axis=[0, 0, 1], angle=yaw).elements)})
            key = i % 6 == 0
            folder = "samples" if key else "sweeps"
            filename = f"{folder}/CAM_FRONT/s{s}_{i:04d}.jpg"
            image = np.full((HEIGHT, WIDTH, 3), (i * 7) % 256, np.uint8)
            cv2.imwrite(str(root / filename), image)
            next_key = min(k for k in keys if k >= i)
            tables["sample_data"].append({
                "token": _tok("sd", s, i), "sample_token": sample_tok[next_key], "ego_pose_token": _tok("pose", s, i),
                "calibrated_sensor_token": "cs-cam", "timestamp": stamps[i], "fileformat": "jpg", "is_key_frame": key,
                "height": HEIGHT, "width": WIDTH, "filename": filename,
                "prev": _tok("sd", s, i - 1) if i else "", "next": _tok("sd", s, i + 1) if i + 1 < n_frames else ""})
        tables["scene"].append({"token": _tok("scene", s), "name": names[s] if s < len(names) else f"scene-{s:04d}", "log_token": "log-0",
                                "description": descriptions[s % len(descriptions)], "nbr_samples": len(keys),
                                "first_sample_token": sample_tok[keys[0]], "last_sample_token": sample_tok[keys[-1]]})
    (root / version).mkdir(parents=True, exist_ok=True)
    for name, rows in tables.items():
        (root / version / f"{name}.json").write_text(json.dumps(rows))
    return root
