"""The demo's held-out scene: one scene of the protocol's held-out seed, rendered into `<out>/synth`."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from drivesim.config.protocol import ProtocolConfig
from drivesim.config.synth import CameraConfig, SynthConfig

log = logging.getLogger(__name__)
VERSION = "v1.0-synth"
TRAINING_SEEDS_FROM = 1000  # scripts/train_demo.sh renders its world from seed 1000 on


def scene_config(root: Path, seed: int, seconds: float, protocol: ProtocolConfig) -> SynthConfig:
    """One scene long enough for `seconds` (whole key-frame intervals), at the protocol's render size."""
    keyframe_hz = SynthConfig().keyframe_hz
    seconds = math.ceil(seconds * keyframe_hz) / keyframe_hz
    return SynthConfig(out=str(root), scenes=1, seconds=seconds, seed=seed, preview=True,
                       camera=CameraConfig(width=int(protocol.render.width), height=int(protocol.render.height)))


def render_scene(root: Path, seed: int, seconds: float, protocol: ProtocolConfig) -> tuple[Path, str]:
    """Render (or keep, when it is the same render) the scene; returns the dataset root and the scene name."""
    from drivesim.synth.render import render_unless_current

    if seed >= TRAINING_SEEDS_FROM and seed not in protocol.held_out_seeds:
        log.warning("scene_seed=%d is in the training seeds' range (>= %d): the scene may not be held out",
                    seed, TRAINING_SEEDS_FROM)
    cfg = scene_config(root, seed, seconds, protocol)
    if render_unless_current(cfg):
        log.info("rendered the held-out scene (seed %d, %g s) into %s", seed, cfg.seconds, root)
    scenes = json.loads((root / VERSION / "scene.json").read_text())
    return root, str(scenes[0]["name"])
