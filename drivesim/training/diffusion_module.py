"""The diffusion stages (image, temporal / prediction, interpolation) as one LightningModule.

It owns the objective only: noise the latents with the diffusers schedule, draw context frames and
CFG dropout per sample, predict eps or v, and weight the MSE. Stages differ in what they draw:
- image: every frame on its own (temporal layers bypassed, per-frame timesteps), spatial + encoders train;
- temporal: one timestep per clip, the first S frames given (S drawn from `stage.context_frames`),
  noise-augmented at a level the model receives; spatial frozen;
- interpolation: every `interpolation_factor`-th frame given, the frames between denoised, stage id on.
Given frames never enter the loss.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import Tensor, nn

from drivesim.diffusion.objectives import DiffusionObjective
from drivesim.diffusion.sampling import mix_shared_noise
from drivesim.models.condition import VideoCondition
from drivesim.models.conditioning.context import augment_context, given_anchor
from drivesim.models.conditioning.dropout import DROPPABLE, drop_conditions
from drivesim.models.conditioning.options import DropoutProbabilities
from drivesim.models.video_unet import VideoUNet
from drivesim.models.weights import group_of
from drivesim.training.adapter import PromptCache, batch_to_model_input
from drivesim.training.base import StageModule
from drivesim.training.data import TrainBatch
from drivesim.training.randomness import clip_timesteps, per_sample

VAL_BUCKETS = 4  # validation loss per quarter of the noise schedule


class DiffusionModule(StageModule):
    def __init__(self, unet: VideoUNet, objective: DiffusionObjective, stage_cfg: Any, trainer_cfg: Any,
                 seed: int, frame_size: tuple[int, int], vae: nn.Module | None = None,
                 text_encoder: nn.Module | None = None, dropout: DropoutProbabilities | None = None) -> None:
        super().__init__(trainer_cfg, seed)
        self.unet = unet
        self.objective = objective
        self.stage_cfg = stage_cfg
        self.stage_name = "temporal" if stage_cfg.name == "prediction" else str(stage_cfg.name)
        # The image objective (per-frame timesteps, temporal layers bypassed): image and lora stages.
        self.image_like = self.stage_name in ("image", "lora")
        self.frame_size = frame_size
        self.vae = vae.requires_grad_(False).eval() if vae is not None else None
        self.text_encoder: Any = text_encoder
        self.prompts = PromptCache(text_encoder) if text_encoder is not None else None
        self.dropout = dropout or DropoutProbabilities(0, 0, 0, 0, 0)
        groups = tuple(stage_cfg.train_groups) or (("spatial", "condition") if self.stage_name == "image"
                                                   else ("temporal", "condition"))
        self.train_groups = groups
        for name, param in self.unet.named_parameters():
            param.requires_grad_(group_of(name) in groups)
        if text_encoder is not None:
            text_encoder.requires_grad_(False)
            text_encoder.projection.requires_grad_("spatial" in groups)  # the text projection is the image stage's
        self.unet.enable_gradient_checkpointing(bool(trainer_cfg.gradient_checkpointing))
        self.setup_ema()

    def trainable(self) -> list[nn.Parameter]:
        params = [p for p in self.unet.parameters() if p.requires_grad]
        if self.text_encoder is not None:
            params += [p for p in self.text_encoder.projection.parameters() if p.requires_grad]
        return params

    def configure_optimizers(self) -> Any:
        """The context / guess blends' strengths (if trained) get their own learning rate and no weight decay."""
        encoders = self.unet.condition_encoders
        blends = [getattr(encoders, name, None) for name in ("blend", "guess_blend")]
        mine = [p for b in blends if b is not None for p in b.parameters() if p.requires_grad]
        if not mine:
            return super().configure_optimizers()
        ids = {id(p) for p in mine}
        rest = [p for p in self.trainable() if id(p) not in ids]
        return self.adamw_with_warmup([{"params": rest},
                                       {"params": mine, "lr": float(self.stage_cfg.context_blend_lr),
                                        "weight_decay": 0.0}])

    # ------------------------------------------------------------------ inputs
    def latents_of(self, batch: TrainBatch) -> Tensor:
        if batch.latents is not None:
            return batch.latents.to(self.device, self.unet.dtype)
        if self.vae is None:
            raise RuntimeError("a batch of frames needs the autoencoder (model.vae)")
        from drivesim.training.adapter import frames_to_unit

        with torch.no_grad():
            return self.vae.encode_video(frames_to_unit(batch.clips.frames.to(self.device)))  # type: ignore[operator]

    def null_text(self) -> Tensor | None:
        return None if self.prompts is None else self.prompts([""])[0]

    def condition_of(self, batch: TrainBatch) -> VideoCondition:
        cond = batch_to_model_input(batch.clips, self.frame_size).condition.to(self.device)
        if self.prompts is not None:
            cond = replace(cond, text=self.prompts([s.description for s in batch.clips.sources]).to(self.device))
        return cond

    # ------------------------------------------------------------------ the objective
    def draw(self, batch: TrainBatch, latents: Tensor, generators: list[torch.Generator],
             cond: VideoCondition, train: bool = True) -> tuple[Tensor, Tensor, VideoCondition, Tensor]:
        """(timesteps (B, T), noise, condition with context and dropout, loss mask (B, T)). One fixed order
        of draws per sample generator, so every draw is a function of (seed, sample position)."""
        b, t = latents.shape[:2]
        n = self.objective.num_train_timesteps
        dev = latents.device
        if self.image_like:
            timesteps = per_sample(generators, "randint", (t,), high=n)
        else:
            power = float(self.stage_cfg.get("timestep_power", 1.0))
            timesteps = clip_timesteps(generators, n, power)[:, None].expand(b, t)
        noise = per_sample(generators, "randn", tuple(latents.shape[1:])).to(dev, latents.dtype)
        uniforms = per_sample(generators, "rand", (len(DROPPABLE) + 3,))  # dropout, waypoints, S, image-only
        context = torch.zeros(b, t)
        if self.stage_name == "temporal":
            choices = torch.tensor(list(self.stage_cfg.context_frames), dtype=torch.long)
            counts = choices[(uniforms[:, len(DROPPABLE) + 1] * len(choices)).long().clamp(max=len(choices) - 1)]
            context = (torch.arange(t)[None, :] < counts[:, None]).float()
        elif self.stage_name == "interpolation":
            factor = int(self.stage_cfg.interpolation_factor)
            context = (torch.arange(t) % factor == 0).float()[None, :].expand(b, t).clone()
        image_only = torch.zeros(b, dtype=torch.bool)
        if self.image_like:
            image_only[:] = True
        elif float(self.stage_cfg.image_fraction) > 0:
            image_only = uniforms[:, len(DROPPABLE) + 2] < float(self.stage_cfg.image_fraction)
            context = context * (~image_only)[:, None].float()
        if not self.image_like:
            level = per_sample(generators, "rand", ()) * float(self.stage_cfg.context_noise_max)
            aug = per_sample(generators, "randn", tuple(latents.shape[1:])).to(dev, latents.dtype)
            cond = replace(cond, context_latents=augment_context(latents, context.to(dev), level.to(dev), noise=aug),
                           context_mask=context.to(dev), context_noise_level=level.to(dev))
            encoders: Any = self.unet.condition_encoders
            if bool(encoders is not None and encoders.frame is not None and encoders.frame.stage is not None):
                cond = replace(cond, stage_id=torch.full((b,), int(self.stage_cfg.stage_id), device=dev))
        cond = replace(cond, image_only=image_only.to(dev) if bool(image_only.any()) else False)
        if train:
            cond = drop_conditions(cond, self.dropout, null_text=self.null_text(),
                                   uniforms=uniforms[:, : len(DROPPABLE)].T.contiguous())
            drop_wp = (uniforms[:, len(DROPPABLE)] < float(self.stage_cfg.waypoint_dropout)).to(dev)
            if cond.ego_waypoints is not None:
                nan = torch.full_like(cond.ego_waypoints, float("nan"))
                cond = replace(cond, ego_waypoints=torch.where(drop_wp[:, None, None, None], nan, cond.ego_waypoints))
        given = cond.context_mask if cond.context_mask is not None else torch.zeros(b, t, device=dev)
        correlation = float(self.stage_cfg.get("noise_correlation", 0.0))
        if correlation > 0 and not self.image_like:  # drawn last: 0 leaves every earlier draw as it was
            shared = per_sample(generators, "randn", (1, *latents.shape[2:])).to(dev, latents.dtype)
            # Only the frames the model makes share it: generation noises the given frames independently (a
            # shared part there would let the model read the common noise off its clean context), and an
            # image-only sample denoises its frames one by one.
            mixed = (given == 0) & ~image_only.to(dev)[:, None]
            noise = torch.where(mixed[..., None, None, None], mix_shared_noise(noise, shared, correlation), noise)
        return timesteps.to(dev), noise, cond, 1.0 - given.float()

    def diffusion_loss(self, latents: Tensor, timesteps: Tensor, noise: Tensor, cond: VideoCondition,
                       loss_mask: Tensor) -> Tensor:
        noisy = self.objective.add_noise(latents, noise, timesteps)
        out = self.unet(noisy, timesteps, cond)
        target = self.objective.target(latents, noise, timesteps)
        mse = ((out.float() - target.float()) ** 2).mean(dim=(2, 3, 4))
        weighted = mse * self.objective.loss_weight(timesteps).to(mse.device) * loss_mask
        # Per-sample mean over its denoised frames, then the batch mean: a DDP run averages to the same.
        return (weighted.sum(1) / loss_mask.sum(1).clamp_min(1.0)).mean()

    def anchored(self, latents: Tensor, cond: VideoCondition) -> Tensor:
        """What the model denoises: the latents, or with `stage.anchor_to_given` their difference to each
        frame's last given frame (the clean latents: generation's given keys are its own clean outputs)."""
        if not bool(self.stage_cfg.get("anchor_to_given", False)) or cond.context_mask is None:
            return latents
        return latents - given_anchor(latents, cond.context_mask)

    def losses(self, batch: TrainBatch, generators: list[torch.Generator]) -> dict[str, Tensor]:
        latents = self.latents_of(batch)
        timesteps, noise, cond, mask = self.draw(batch, latents, generators, self.condition_of(batch))
        return {"loss": self.diffusion_loss(self.anchored(latents, cond), timesteps, noise, cond, mask)}

    # ------------------------------------------------------------------ validation
    def validation_step(self, batch: TrainBatch, batch_idx: int) -> None:
        if len(batch) == 0:
            return
        latents = self.latents_of(batch)
        generators = self.generators(batch, stream="val")
        _, noise, cond, mask = self.draw(batch, latents, generators, self.condition_of(batch), train=False)
        latents = self.anchored(latents, cond)
        n = self.objective.num_train_timesteps
        with self.ema_weights():
            for k in range(VAL_BUCKETS):
                t = int((k + 0.5) * n / VAL_BUCKETS)
                timesteps = torch.full(latents.shape[:2], t, device=latents.device, dtype=torch.long)
                loss = self.diffusion_loss(latents, timesteps, noise, cond, mask)
                lo, hi = k * n // VAL_BUCKETS, (k + 1) * n // VAL_BUCKETS
                self.log(f"val/loss_t{lo}-{hi}", loss, batch_size=len(batch), sync_dist=True)

    def example_condition(self, batch: TrainBatch) -> tuple[Tensor, VideoCondition]:
        """Clean latents and the (undropped) condition of a batch, for sampled validation clips."""
        latents = self.latents_of(batch)
        _, _, cond, _ = self.draw(batch, latents, self.generators(batch, stream="sample"), self.condition_of(batch),
                                  train=False)
        return latents, cond

