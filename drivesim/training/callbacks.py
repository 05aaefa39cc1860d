"""Sample clips with the EMA weights at each validation and write them as mp4 to the logs."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from diffusers import DDIMScheduler

from drivesim.diffusion.sampling import frame_correlated_noise
from drivesim.pipelines.writers import Mp4Writer
from drivesim.training.adapter import unit_to_frames

log = logging.getLogger(__name__)


@torch.no_grad()
def sample_clip(module: Any, latents: torch.Tensor, cond: Any, steps: int, seed: int) -> torch.Tensor:
    """A plain diffusers DDIM loop from pure noise, given frames kept from `cond`'s context (a model
    trained with `stage.anchor_to_given` denoises the difference to the anchor, added back here)."""
    anchor = latents - module.anchored(latents, cond) if hasattr(module, "anchored") else torch.zeros_like(latents)
    scheduler = DDIMScheduler.from_config(module.objective.scheduler_config())
    scheduler.set_timesteps(steps)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(latents.shape, generator=generator)
    stage_cfg = getattr(module, "stage_cfg", None)
    correlation = float(stage_cfg.get("noise_correlation", 0.0)) if stage_cfg is not None else 0.0
    x = frame_correlated_noise(x, correlation, generator).to(latents.device, latents.dtype)
    for t in scheduler.timesteps:
        out = module.unet(x, t.expand(latents.shape[0]).to(latents.device), cond)
        x = scheduler.step(out, t, x).prev_sample
    x = x + anchor
    if cond.context_mask is not None:
        keep = cond.context_mask.bool()[..., None, None, None]
        x = torch.where(keep, latents, x)
    return x


class SampleVideos(L.Callback):
    """At each validation end (rank 0): sample `trainer.sample_clips` clips and write them as mp4."""

    def __init__(self, folder: Path, fps: float) -> None:
        self.folder, self.fps = Path(folder), fps

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        if not trainer.is_global_zero or trainer.sanity_checking or not hasattr(pl_module, "example_condition"):
            return
        if pl_module.vae is None or int(pl_module.trainer_cfg.sample_clips) < 1:
            return
        loader = trainer.datamodule.val_dataloader()  # type: ignore[attr-defined]
        batch = next(iter(loader))
        if len(batch) == 0:
            return
        n = int(pl_module.trainer_cfg.sample_clips)
        latents, cond = pl_module.example_condition(batch)
        latents = latents[:n]
        from dataclasses import fields, replace

        cut: dict[str, object] = {f.name: getattr(cond, f.name)[:n] for f in fields(cond)
                                  if isinstance(getattr(cond, f.name), torch.Tensor) and getattr(cond, f.name).ndim > 0}
        cut["extra"] = {k: v[:n] for k, v in cond.extra.items()}
        cond = replace(cond, **cut)
        with pl_module.ema_weights():
            z = sample_clip(pl_module, latents, cond, int(pl_module.trainer_cfg.sample_steps), pl_module.seed)
        frames = unit_to_frames(pl_module.vae.decode_video(z)).cpu()
        for i, clip in enumerate(frames):
            path = self.folder / f"step{trainer.global_step:07d}_clip{i}.mp4"
            with Mp4Writer(path, self.fps) as video:
                for frame in clip.permute(0, 2, 3, 1).numpy():
                    video.write(frame)
        log.info("validation samples written to %s", self.folder)


class TrainingClock(L.Callback):
    """Wall seconds of training summed over every invocation of a resumed run: the total rides in the
    checkpoint, so an export's `summary.json` reports what its steps cost, not only the last invocation.
    Time after the last checkpoint of a killed invocation is lost with its steps (they are redone)."""

    def __init__(self) -> None:
        self.before = 0.0  # seconds of earlier invocations, up to their last checkpoint
        self.started: float | None = None
        self.known = True  # False: resumed from a checkpoint made before the clock existed

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.started = time.perf_counter()

    def total(self) -> float:
        return self.before + (0.0 if self.started is None else time.perf_counter() - self.started)

    def reported(self) -> float | None:
        """The total for `summary.json`; None where earlier invocations went unrecorded (an older checkpoint)."""
        return round(self.total(), 2) if self.known else None

    def state_dict(self) -> dict[str, Any]:
        return {"train_seconds": self.total()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.known = "train_seconds" in state_dict
        self.before = float(state_dict.get("train_seconds", 0.0))
