"""`drivesim synth`: render scenes to a nuScenes-format folder."""

from __future__ import annotations

from omegaconf import DictConfig


def run_synth(cfg: DictConfig) -> int:
    raise NotImplementedError("synthetic world renderer lands with the synthetic-world issue")
