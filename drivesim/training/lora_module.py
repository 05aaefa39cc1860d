"""The `lora` stage: DreamBooth with LoRA (peft) on the spatial attention of an image or temporal export.

The parent's UNet is rebuilt exactly (`Export.build_unet`), LoRA adapters are added to its spatial
attention projections (`drivesim.models.lora`: a temporal layer or condition encoder never matches),
and only the adapters train, with the image objective (each frame on its own, temporal layers
bypassed) on the subject's frames. With `stage.prior_weight > 0`, prior preservation distils the
frozen base model (adapters disabled) into the adapted one on the same noisy latents with every
condition dropped, so the model's unconditional prior stays the base model's.

The export holds the adapters alone (`lora.safetensors`); generation loads them onto every stage
whose spatial weights are the parent's and merges them: the personalised spatial weights then sit
under the trained temporal layers (the DreamBooth swap).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import Tensor, nn

from drivesim.exports import LORA_FILE, SCHEDULER_FILE, Export
from drivesim.models.condition import VideoCondition
from drivesim.models.lora import LoraOptions, add_lora, save_lora
from drivesim.models.video_unet import VideoUNet
from drivesim.training.data import TrainBatch
from drivesim.training.diffusion_module import DiffusionModule


@contextmanager
def adapters_disabled(model: nn.Module) -> Iterator[None]:
    """Inside: `model` runs as its base model (every peft adapter layer bypassed)."""
    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    for layer in layers:
        layer.enable_adapters(False)
    try:
        yield
    finally:
        for layer in layers:
            layer.enable_adapters(True)


class LoraModule(DiffusionModule):
    def __init__(self, unet: VideoUNet, *args: Any, options: LoraOptions, parent: Export, **kwargs: Any) -> None:
        add_lora(unet, options)
        super().__init__(unet, *args, **kwargs)
        self.lora_options = options
        self.parent_export = parent
        for name, param in self.unet.named_parameters():
            param.requires_grad_("lora_" in name)
        if self.text_encoder is not None:
            self.text_encoder.projection.requires_grad_(False)

    def trainable(self) -> list[nn.Parameter]:
        return [p for n, p in self.unet.named_parameters() if "lora_" in n]

    def losses(self, batch: TrainBatch, generators: list[torch.Generator]) -> dict[str, Tensor]:
        latents = self.latents_of(batch)
        timesteps, noise, cond, mask = self.draw(batch, latents, generators, self.condition_of(batch))
        subject = self.diffusion_loss(latents, timesteps, noise, cond, mask)
        weight = float(self.stage_cfg.prior_weight)
        if weight <= 0:
            return {"loss": subject}
        noisy = self.objective.add_noise(latents, noise, timesteps)
        null = VideoCondition(image_only=True)
        text = self.null_text()
        if text is not None:
            null.text = text.expand(latents.shape[0], *text.shape).to(self.device)
        with torch.no_grad(), adapters_disabled(self.unet):
            base = self.unet(noisy, timesteps, null)
        prior = ((self.unet(noisy, timesteps, null).float() - base.float()) ** 2).mean()
        return {"loss": subject + weight * prior, "subject": subject, "prior": prior}

    def export_files(self, folder: Path, cfg: Any) -> tuple[str, str, str | None]:
        """The adapters (EMA values inside `ema_weights`) and the parent's noise schedule; the marker
        carries the parent's architecture hashes, which generation checks before the swap."""
        save_lora(self.unet, folder / LORA_FILE, self.lora_options)
        (folder / SCHEDULER_FILE).write_text((self.parent_export.path / SCHEDULER_FILE).read_text())
        return self.parent_export.arch_hash, self.parent_export.spatial_hash, self.parent_export.prediction_type
