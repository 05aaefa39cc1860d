"""Schema of the synthetic world (`drivesim synth`, conf/synth/)."""

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
    pitch_deg: float = 0.0


@dataclass
class WorldConfig:
    """Procedural world options."""

    hills: bool = True
    traffic_density: float = 1.0


@dataclass
class SynthConfig:
    out: str = "outputs/synth"
    scenes: int = 2
    seconds: float = 10.0
    seed: int = 0
    version: str = "v1.0-synth"
    fps: float = 12.0
    keyframe_hz: float = 2.0
    preview: bool = False
    camera: CameraConfig = field(default_factory=CameraConfig)
    world: WorldConfig = field(default_factory=WorldConfig)
