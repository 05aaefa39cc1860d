"""The scenario file: a typed, validated description of a drive (format in conf/scenario/README.md).

`load_scenario(path)` / `parse_scenario(mapping, source)` return a frozen `Scenario` or raise a
`ScenarioError` whose message is one line naming the file and the field. Values are checked here;
whether an agent is ever in view needs the camera and is checked by `drivesim.scenario.timeline`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from drivesim.vocab import CLASSES, LABEL_VOCAB

TOP_KEYS = ("name", "seconds", "labels", "text", "ego", "agents", "camera", "start")
AGENT_KEYS = ("id", "class", "size", "track")
EGO_KEYS = ("speed", "yaw_rate")
CAMERA_KEYS = ("intrinsics", "size", "extrinsics", "horizontal_fov_deg", "mount_height_m", "mount_forward_m",
               "pitch_deg")


class ScenarioError(ValueError):
    """A bad scenario: the message is one line, `<file>: <field>: <problem>`."""


@dataclass(frozen=True)
class Keys:
    """Piecewise-linear keys: times (K,) strictly increasing seconds, values (K, D)."""

    times: np.ndarray
    values: np.ndarray

    def at(self, t: float) -> np.ndarray:
        """Linear between keys; the first value before the first key, the last after the last."""
        return np.array([np.interp(t, self.times, self.values[:, d]) for d in range(self.values.shape[1])])

    def covers(self, t: float) -> bool:
        return bool(self.times[0] - 1e-9 <= t <= self.times[-1] + 1e-9)


@dataclass(frozen=True)
class Agent:
    """An agent with a 3D `track` (projected through the camera) or, replayed from 2D-only data
    (video sidecars), an `image_track` of its 2D box: values (K, 4) xyxy normalised to [0, 1]."""

    id: str
    cls: str  # a drivesim.vocab.CLASSES name
    size: tuple[float, float, float]  # length, width, height (m)
    track: Keys | None  # values (K, 4): x ahead, y left, yaw (rad), z up (bottom-face centre in the ego frame, m)
    image_track: Keys | None = None

    @property
    def keys(self) -> Keys:
        keys = self.track if self.track is not None else self.image_track
        assert keys is not None
        return keys

    @property
    def class_index(self) -> int:
        return CLASSES.index(self.cls)


@dataclass(frozen=True)
class CameraSpec:
    """A camera given in the scenario: intrinsics at `size` [H, W] (+ extrinsics ego<-camera), or a mounting."""

    intrinsics: tuple[tuple[float, ...], ...] | None = None
    size: tuple[int, int] | None = None
    extrinsics: tuple[tuple[float, ...], ...] | None = None
    horizontal_fov_deg: float | None = None
    mount_height_m: float = 1.5
    mount_forward_m: float = 1.7
    pitch_deg: float = 0.0


@dataclass(frozen=True)
class Scenario:
    name: str
    seconds: float | None
    labels: dict[str, str]  # label name -> vocabulary word; missing = unknown
    text: str | None
    speed: Keys | None  # values (K, 1), m/s; None = unknown
    yaw_rate: Keys | None  # values (K, 1), rad/s, left positive; None = unknown
    agents: tuple[Agent, ...]
    camera: CameraSpec | None
    start: dict[str, Any] | None
    source: str  # the file (or config) it came from, for error messages

    def label_indices(self) -> list[int]:
        """`VideoCondition.labels` row: vocabulary index - 1, so unknown is -1."""
        return [LABEL_VOCAB[name].index(self.labels.get(name, "unknown")) - 1 for name in LABEL_VOCAB]


def load_scenario(path: str | Path) -> Scenario:
    path = Path(path)
    if not path.is_file():
        raise ScenarioError(f"{path}: no such scenario file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ScenarioError(f"{path}: not a YAML file ({first})") from None
    if not isinstance(data, Mapping):
        raise ScenarioError(f"{path}: not a YAML mapping of scenario fields (got {type(data).__name__})")
    # A copy of a conf/scenario file keeps its Hydra `defaults:` list (the schema it composes with): not a field.
    data = {k: v for k, v in data.items() if k != "defaults"}
    return parse_scenario(data, str(path))


def parse_scenario(data: Mapping[str, Any], source: str) -> Scenario:
    """Validate a mapping of scenario fields; `source` names the file in errors."""
    def fail(field: str, problem: str) -> ScenarioError:
        return ScenarioError(f"{source}: {field}: {problem}")

    _no_unknown(data, TOP_KEYS, "", fail)
    name = data.get("name") or Path(source).stem
    if not isinstance(name, str):
        raise fail("name", f"must be a string, got {name!r}")
    seconds = data.get("seconds")
    if seconds is not None:
        seconds = _number(seconds, "seconds", fail)
        if seconds <= 0:
            raise fail("seconds", f"must be > 0, got {seconds}")
    text = data.get("text")
    if text is not None and not isinstance(text, str):
        raise fail("text", f"must be a string, got {text!r}")
    ego = data.get("ego") or {}
    if not isinstance(ego, Mapping):
        raise fail("ego", "must be a mapping with speed and yaw_rate")
    _no_unknown(ego, EGO_KEYS, "ego.", fail)
    speed = _keys(ego["speed"], 1, "ego.speed", fail) if ego.get("speed") is not None else None
    if speed is not None and (speed.values < 0).any():
        raise fail("ego.speed", f"speeds must be >= 0, got {float(speed.values.min())}")
    yaw = _keys(ego["yaw_rate"], 1, "ego.yaw_rate", fail) if ego.get("yaw_rate") is not None else None
    agents = data.get("agents") or []
    if not isinstance(agents, Sequence) or isinstance(agents, str):
        raise fail("agents", "must be a list of agents")
    parsed = tuple(_agent(a, i, fail) for i, a in enumerate(agents))
    ids = [a.id for a in parsed]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise fail("agents", f"duplicate agent id {dupes[0]!r}")
    start = data.get("start")
    if start is not None and not isinstance(start, Mapping):
        raise fail("start", "must be a mapping {data, scene, time} or null")
    return Scenario(name=name, seconds=seconds, labels=_labels(data.get("labels"), fail), text=text,
                    speed=speed, yaw_rate=yaw, agents=parsed, camera=_camera(data.get("camera"), fail),
                    start=dict(start) if start is not None else None, source=source)


def _no_unknown(data: Mapping[str, Any], allowed: Sequence[str], prefix: str, fail: Any) -> None:
    unknown = [k for k in data if k not in allowed]
    if unknown:
        raise fail(f"{prefix}{unknown[0]}", f"unknown key (allowed: {', '.join(allowed)})")


def _number(value: Any, field: str, fail: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise fail(field, f"must be a finite number, got {value!r}")
    return float(value)


def _keys(value: Any, dims: int, field: str, fail: Any, optional: int = 0) -> Keys:
    """[[t, v1..vD], ...]: at least one key, times strictly increasing; `optional` trailing values default to 0."""
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) == 0:
        raise fail(field, "must be a non-empty list of [t, value...] keys")
    rows = []
    for i, row in enumerate(value):
        if not isinstance(row, Sequence) or isinstance(row, str) or not dims + 1 <= len(row) <= dims + 1 + optional:
            raise fail(f"{field}[{i}]", f"must be [t, {dims} value(s)], got {row!r}")
        parsed = [_number(x, f"{field}[{i}]", fail) for x in row]
        rows.append(parsed + [0.0] * (dims + 1 + optional - len(parsed)))
    arr = np.asarray(rows, dtype=np.float64)
    if (np.diff(arr[:, 0]) <= 0).any():
        raise fail(field, f"key times must be strictly increasing, got {arr[:, 0].tolist()}")
    return Keys(arr[:, 0].copy(), arr[:, 1:].copy())


def _agent(data: Any, index: int, fail: Any) -> Agent:
    where = f"agents[{index}]"
    if not isinstance(data, Mapping):
        raise fail(where, "must be a mapping with id, class, size, track")
    _no_unknown(data, AGENT_KEYS, f"{where}.", fail)
    for key in AGENT_KEYS:
        if data.get(key) is None:
            raise fail(f"{where}.{key}", "is required")
    if isinstance(data["id"], bool) or not isinstance(data["id"], (str, int)):
        raise fail(f"{where}.id", f"must be a string (or an integer), got {data['id']!r}")
    agent_id = str(data["id"])
    where = f"agents[{agent_id}]"
    cls = data["class"]
    if cls not in CLASSES:
        raise fail(f"{where}.class", f"unknown class {cls!r} (choose from {', '.join(CLASSES)})")
    size = data["size"]
    if not isinstance(size, Sequence) or isinstance(size, str) or len(size) != 3:
        raise fail(f"{where}.size", f"must be [length, width, height] in metres, got {size!r}")
    dims = tuple(_number(s, f"{where}.size", fail) for s in size)
    if min(dims) <= 0:
        raise fail(f"{where}.size", f"every dimension must be > 0, got {list(dims)}")
    track = _keys(data["track"], 3, f"{where}.track", fail, optional=1)  # [t, x, y, yaw(, z)]
    return Agent(id=agent_id, cls=str(cls), size=(dims[0], dims[1], dims[2]), track=track)


def _labels(data: Any, fail: Any) -> dict[str, str]:
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise fail("labels", f"must be a mapping of {', '.join(LABEL_VOCAB)}")
    out = {}
    for key, value in data.items():
        if key not in LABEL_VOCAB:
            raise fail(f"labels.{key}", f"unknown label (choose from {', '.join(LABEL_VOCAB)})")
        if value is None:
            continue
        if value not in LABEL_VOCAB[key]:
            raise fail(f"labels.{key}", f"unknown value {value!r} (choose from {', '.join(LABEL_VOCAB[key])})")
        out[str(key)] = str(value)
    return out


def _matrix(value: Any, n: int, field: str, fail: Any) -> tuple[tuple[float, ...], ...]:
    arr = np.asarray(value, dtype=object)
    if arr.shape != (n, n):
        raise fail(field, f"must be a {n}x{n} matrix, got {value!r}")
    return tuple(tuple(_number(x, field, fail) for x in row) for row in value)


def _camera(data: Any, fail: Any) -> CameraSpec | None:
    if data is None:
        return None
    if not isinstance(data, Mapping):
        raise fail("camera", "must be a mapping or null")
    _no_unknown(data, CAMERA_KEYS, "camera.", fail)
    intr = _matrix(data["intrinsics"], 3, "camera.intrinsics", fail) if data.get("intrinsics") is not None else None
    size = data.get("size")
    if intr is not None:
        if not isinstance(size, Sequence) or len(size) != 2 or min(int(_number(s, "camera.size", fail))
                                                                  for s in size) <= 0:
            raise fail("camera.size", f"[height, width] in pixels of the intrinsics is required, got {size!r}")
    elif data.get("horizontal_fov_deg") is None:
        raise fail("camera", "give intrinsics (with size) or horizontal_fov_deg")
    if intr is not None:
        k = np.asarray(intr, dtype=np.float64)
        if k[0, 0] <= 0 or k[1, 1] <= 0 or not np.allclose(k[2], [0.0, 0.0, 1.0]):
            raise fail("camera.intrinsics", "must be a pinhole matrix [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] "
                                            f"with fx, fy > 0, got {[list(r) for r in intr]}")
    extr = _matrix(data["extrinsics"], 4, "camera.extrinsics", fail) if data.get("extrinsics") is not None else None
    if extr is not None:
        m = np.asarray(extr, dtype=np.float64)
        rotation = m[:3, :3]
        if not np.allclose(m[3], [0.0, 0.0, 0.0, 1.0]) or not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-3) \
                or np.linalg.det(rotation) <= 0:
            raise fail("camera.extrinsics", "must be a rigid 4x4 ego<-camera transform (a rotation, a translation "
                                            "and the last row 0 0 0 1)")
    fov = data.get("horizontal_fov_deg")
    if fov is not None and not 1.0 <= _number(fov, "camera.horizontal_fov_deg", fail) < 179.0:
        raise fail("camera.horizontal_fov_deg", f"must lie in [1, 179), got {fov}")
    return CameraSpec(
        intrinsics=intr, size=(int(size[0]), int(size[1])) if intr is not None and size else None, extrinsics=extr,
        horizontal_fov_deg=float(fov) if fov is not None else None,
        mount_height_m=_number(data.get("mount_height_m", 1.5), "camera.mount_height_m", fail),
        mount_forward_m=_number(data.get("mount_forward_m", 1.7), "camera.mount_forward_m", fail),
        pitch_deg=_number(data.get("pitch_deg", 0.0), "camera.pitch_deg", fail))
