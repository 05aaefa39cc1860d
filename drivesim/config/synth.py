"""Schema of the synthetic world (`drivesim synth`, conf/synth.yaml and conf/synth/)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CameraConfig:
    """Forward camera (CAM_FRONT) intrinsics and mounting, in metres and degrees."""

    width: int = 512
    height: int = 256
    horizontal_fov_deg: float = 70.0
    mount_height_m: float = 1.5
    mount_forward_m: float = 1.7
    pitch_deg: float = 0.0  # > 0 tilts the camera down


@dataclass
class WorldConfig:
    """Procedural world options; a label left null is drawn at random per scene."""

    hills: bool = True
    traffic_density: float = 1.0  # multiplies the crowdedness level's agent density
    props_density: float = 1.0  # roadside trees, poles and buildings
    time_of_day: str | None = None  # day | dusk | night
    weather: str | None = None  # clear | rain | fog
    crowdedness: str | None = None  # sparse | moderate | crowded
    forward_lanes: int | None = None  # 1 or 2; null: random
    backward_lanes: int | None = None  # 1 or 2; null: random
    stop_probability: float = 0.5  # chance that the ego meets a red light in a scene of >= 8 s
    # A distinctive paint job the base world never shows (drivesim/synth/livery.py: magenta_solid | magenta_checker |
    # magenta_stripes), worn by each car with probability livery_fraction; null: none (seeds render as before).
    livery: str | None = None
    livery_fraction: float = 0.5


@dataclass
class SynthConfig:
    out: str = "outputs/synth"
    scenes: int = 2
    seconds: float = 10.0
    seed: int = 0
    version: str = "v1.0-synth"
    fps: float = 12.0
    keyframe_hz: float = 2.0
    jpeg_quality: int = 90
    preview: bool = False
    preview_frames: int = 8  # frames in the preview grid
    overwrite: bool = True  # replace an existing synthetic dataset at `out` (never any other folder)
    camera: CameraConfig = field(default_factory=CameraConfig)
    world: WorldConfig = field(default_factory=WorldConfig)
