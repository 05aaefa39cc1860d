"""The procedural driving world: the embedded default, written as a nuScenes-format dataset.

`render_dataset(cfg)` writes the dataset; `truth.load_scene_truth(root, scene)` reads its exact ground truth.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from drivesim.config.synth import SynthConfig


def render_dataset(cfg: SynthConfig | DictConfig) -> Path:
    """Render the synthetic nuScenes-format dataset described by `cfg`; returns its root folder."""
    from drivesim.synth.render import render_dataset as _render

    return _render(cfg)


__all__ = ["render_dataset"]
