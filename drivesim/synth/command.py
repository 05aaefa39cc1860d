"""`drivesim synth`: render scenes to a nuScenes-format folder."""

from __future__ import annotations

import logging

from omegaconf import DictConfig

log = logging.getLogger(__name__)


def run_synth(cfg: DictConfig) -> int:
    from drivesim.synth.render import render_dataset

    try:
        root = render_dataset(cfg)
    except (ValueError, FileExistsError) as exc:
        log.error("drivesim synth: %s", exc)
        return 2
    log.info("synthetic dataset ready: %s", root)
    return 0
