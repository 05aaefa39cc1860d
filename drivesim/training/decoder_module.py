"""The `decoder` stage: the VAE decoder's temporal layers fine-tuned on clips (Video LDM section 3.1.1).

The encoder and the image decoder stay frozen; only `TemporalDecoder`'s 3D-conv layers train, on
clips encoded to a posterior draw per frame (the frame-to-frame latent jitter it learns to smooth;
`stage.sample_latents=false`: the mean): L1 + SSIM (kornia; the perceptual term, as no LPIPS weights
are installable here) + a 3D-conv patch discriminator on clips with the hinge loss. Both players
share one optimiser step: the generator's adversarial term sees the discriminator through detached
parameters (`torch.func.functional_call`) and the discriminator's term sees detached reconstructions,
so each gradient reaches only its own player, and the shared EMA, resume and bad-number machinery
of `StageModule` stays as it is.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import kornia
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from drivesim.exports import TEMPORAL_DECODER_FILE
from drivesim.models.folding import fold_frames, unfold_frames
from drivesim.models.vae import VideoVAE
from drivesim.training.adapter import frames_to_unit
from drivesim.training.base import StageModule
from drivesim.training.data import TrainBatch
from drivesim.training.randomness import per_sample


class PatchDiscriminator3D(nn.Module):
    """Clips (B, T, 3, H, W) in [-1, 1] -> patch logits (B, 1, T, H/4, W/4): a PatchGAN with 3D convs."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv3d(3, width, (3, 4, 4), stride=(1, 2, 2), padding=(1, 1, 1)), nn.LeakyReLU(0.2),
            nn.Conv3d(width, 2 * width, (3, 4, 4), stride=(1, 2, 2), padding=(1, 1, 1)),
            nn.GroupNorm(min(8, 2 * width), 2 * width), nn.LeakyReLU(0.2),
            nn.Conv3d(2 * width, 1, 3, padding=1))

    def forward(self, clips: Tensor) -> Tensor:
        return self.net(clips.permute(0, 2, 1, 3, 4))  # type: ignore[no-any-return]


class DecoderModule(StageModule):
    def __init__(self, vae: VideoVAE, stage_cfg: Any, trainer_cfg: Any, seed: int) -> None:
        super().__init__(trainer_cfg, seed)
        if vae.temporal_decoder is None:
            raise ValueError("the decoder stage needs VideoVAE(temporal_decoder=True)")
        self.vae = vae.requires_grad_(False)
        for p in vae.temporal_decoder.temporal_parameters():
            p.requires_grad_(True)
        self.discriminator = PatchDiscriminator3D()
        self.stage_cfg = stage_cfg
        self.setup_ema()

    def trainable(self) -> list[nn.Parameter]:
        assert self.vae.temporal_decoder is not None
        return self.vae.temporal_decoder.temporal_parameters()

    def configure_optimizers(self) -> Any:
        return self.adamw_with_warmup([{"params": self.trainable()},
                                       {"params": list(self.discriminator.parameters())}])

    def reconstruct(self, x: Tensor, generators: list[torch.Generator] | None = None) -> Tensor:
        """Clips (B, T, 3, H, W) in [-1, 1] -> their reconstruction through the temporal decoder, from
        the posterior mean, or (`generators`: one per sample) from a posterior draw per frame."""
        with torch.no_grad():
            if generators is None:
                z = self.vae.encode_video(x)
            else:
                b, t = x.shape[:2]
                posterior = self.vae.vae.encode(fold_frames(x)).latent_dist
                noise = per_sample(generators, "randn", (t, *posterior.mean.shape[1:])).to(x.device, x.dtype)
                z = posterior.mean + posterior.std * fold_frames(noise)
                z = unfold_frames((z - self.vae.shift_factor) * self.vae.scaling_factor, t)
        return self.vae.decode_video(z, decode_chunk_size=x.shape[1])

    def _adversarial(self) -> bool:
        return float(self.stage_cfg.disc_weight) > 0 and self.global_step >= int(self.stage_cfg.disc_start)

    def losses(self, batch: TrainBatch, generators: list[torch.Generator]) -> dict[str, Tensor]:
        x = frames_to_unit(batch.clips.frames).to(self.device)
        recon = self.reconstruct(x, generators if bool(self.stage_cfg.sample_latents) else None)
        l1 = (recon - x).abs().mean()
        ssim = kornia.losses.ssim_loss((fold_frames(recon).clamp(-1, 1) + 1) / 2, (fold_frames(x) + 1) / 2,
                                       window_size=7)
        rec = l1 + float(self.stage_cfg.ssim_weight) * ssim
        terms = {"rec": rec, "l1": l1, "ssim": ssim}
        total = rec
        if self._adversarial():
            frozen = {n: p.detach() for n, p in self.discriminator.named_parameters()}
            g_loss = -functional_call(self.discriminator, frozen, (recon,)).mean()
            d_loss = 0.5 * (F.relu(1.0 - self.discriminator(x)).mean()
                            + F.relu(1.0 + self.discriminator(recon.detach())).mean())
            total = total + float(self.stage_cfg.disc_weight) * g_loss + d_loss
            terms.update(g_loss=g_loss, d_loss=d_loss)
        return {"loss": total, **terms}

    def validation_step(self, batch: TrainBatch, batch_idx: int) -> None:
        if len(batch) == 0:
            return
        with self.ema_weights(), torch.no_grad():
            x = frames_to_unit(batch.clips.frames).to(self.device)
            recon = self.reconstruct(x).clamp(-1, 1)
            mse = ((recon - x) ** 2).mean(dim=(2, 3, 4)) / 4
            psnr = (10 * torch.log10(1.0 / mse.clamp_min(1e-10))).mean()
            flicker = (recon[:, 1:] - recon[:, :-1]).abs().mean() / 2
        self.log("val/psnr", psnr, batch_size=len(batch), sync_dist=True)
        self.log("val/flicker", flicker, batch_size=len(batch), sync_dist=True)

    # ------------------------------------------------------------------ export
    def export_files(self, folder: Path, cfg: Any) -> tuple[str, str, str | None]:
        """Write the temporal decoder's weights (the autoencoder is the export's parent); (arch, spatial, None)."""
        decoder = self.vae.temporal_decoder
        assert decoder is not None
        decoder.save_temporal(folder / TEMPORAL_DECODER_FILE)
        temporal = [(k, tuple(v.shape)) for k, v in decoder.state_dict().items() if k.startswith("temporal_")]
        base = [(k, tuple(v.shape)) for k, v in self.vae.vae.state_dict().items()]
        return _hash(temporal + base), _hash(base), None


def _hash(items: list[tuple[str, tuple[int, ...]]]) -> str:
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()[:16]
