"""`drivesim demo`: the main job on the embedded default."""

from __future__ import annotations

from omegaconf import DictConfig


def run_demo(cfg: DictConfig) -> int:
    from drivesim.synth.command import run_synth

    return run_synth(cfg.synth)
