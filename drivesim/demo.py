"""`drivesim demo`: the main job on the embedded default.

For now it renders the synthetic world (one scene and its preview) into <out>/synth; the training and
generation stages join here as they land.
"""

from __future__ import annotations

import logging

from omegaconf import DictConfig

log = logging.getLogger(__name__)


def run_demo(cfg: DictConfig) -> int:
    from drivesim.synth.command import run_synth

    code = run_synth(cfg.synth)
    if code == 0:
        log.info("demo: synthetic dataset in %s (preview: %s/preview.png)", cfg.synth.out, cfg.synth.out)
    return code
