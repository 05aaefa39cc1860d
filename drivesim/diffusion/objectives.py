"""The denoising objective on top of a diffusers noise scheduler: noising, targets, loss weights.

The schedule (betas, alphas_cumprod) and `add_noise` / `get_velocity` come from diffusers'
`DDPMScheduler`, so a model trained here samples with any diffusers scheduler built `from_config`
of the same schedule. Tensors may carry any leading shape: the objective works on the folded
`(B*T, C, H, W)` view or on `(B, T, C, H, W)` with per-frame timesteps alike.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from diffusers import DDPMScheduler
from torch import Tensor

PREDICTION_TYPES = ("epsilon", "v_prediction")


class DiffusionObjective:
    """eps- or v-prediction with optional min-SNR-gamma weighting, over a DDPM noise schedule."""

    def __init__(self, schedule: dict[str, Any], prediction_type: str = "epsilon",
                 min_snr_gamma: float | None = None, loss_space: str | None = None) -> None:
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"model.prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
        if loss_space is not None and loss_space not in PREDICTION_TYPES:
            raise ValueError(f"stage.loss_space must be null or one of {PREDICTION_TYPES}, got {loss_space!r}")
        if loss_space not in (None, prediction_type) and min_snr_gamma is not None:
            raise ValueError("stage.loss_space and stage.min_snr_gamma are two weightings: set one of them")
        self.loss_space = loss_space or prediction_type
        if min_snr_gamma is not None and min_snr_gamma <= 0:
            raise ValueError(f"stage.min_snr_gamma must be > 0, got {min_snr_gamma}")
        if schedule.get("rescale_betas_zero_snr") and prediction_type == "epsilon":
            # At zero terminal SNR the last step's x0 from an eps prediction divides by sqrt(alpha_bar) = 0 (NaN
            # samples; inf min-SNR weights): zero-SNR schedules need v-prediction (Lin et al. 2024).
            raise ValueError("model.noise_schedule.rescale_betas_zero_snr needs model.prediction_type=v_prediction "
                             "got epsilon")
        try:
            self.scheduler: Any = cast(Any, DDPMScheduler(**{**schedule, "prediction_type": prediction_type}))
        except (TypeError, ValueError, NotImplementedError) as exc:
            raise ValueError(f"model.noise_schedule is not a valid DDPMScheduler config: {exc}") from exc
        self.prediction_type = prediction_type
        self.min_snr_gamma = min_snr_gamma
        self.num_train_timesteps = int(self.scheduler.config.num_train_timesteps)
        alphas = self.scheduler.alphas_cumprod.double()
        self.snr = (alphas / (1 - alphas)).float()

    def scheduler_config(self) -> dict[str, Any]:
        """The schedule as a diffusers config dict (saved with exports; samplers build from it)."""
        return dict(self.scheduler.config)

    def add_noise(self, x0: Tensor, noise: Tensor, timesteps: Tensor) -> Tensor:
        """q(x_t | x_0); `timesteps` has x0's leading shape (e.g. (B, T)) and broadcasts over the rest."""
        flat = timesteps.reshape(-1)
        lead = timesteps.shape
        out = self.scheduler.add_noise(x0.reshape(flat.numel(), *x0.shape[len(lead):]),
                                       noise.reshape(flat.numel(), *noise.shape[len(lead):]), flat)
        return out.reshape(x0.shape)

    def target(self, x0: Tensor, noise: Tensor, timesteps: Tensor) -> Tensor:
        if self.prediction_type == "epsilon":
            return noise
        flat = timesteps.reshape(-1)
        lead = timesteps.shape
        v = self.scheduler.get_velocity(x0.reshape(flat.numel(), *x0.shape[len(lead):]),
                                        noise.reshape(flat.numel(), *noise.shape[len(lead):]), flat)
        return v.reshape(x0.shape)

    def loss_weight(self, timesteps: Tensor) -> Tensor:
        """Per-timestep weight of the MSE: 1, or min-SNR-gamma (eps: min(snr, g) / snr; v: / (snr + 1)),
        or the error of the output re-expressed in `loss_space`: an eps model's error as the v error it
        implies is x (1 + snr) / snr. That weights the noisy timesteps, where an eps error is small
        however wrong the implied clean frame is, and where conditions such as context frames matter
        most (session 7: the tiny prediction model trained in eps space ignored its context)."""
        if self.loss_space != self.prediction_type:
            snr = self.snr.to(timesteps.device)[timesteps]
            ratio = (snr + 1) / snr  # v-MSE / eps-MSE for the same implied clean frame
            return ratio if self.prediction_type == "epsilon" else 1 / ratio
        if self.min_snr_gamma is None:
            return torch.ones(timesteps.shape, dtype=torch.float32, device=timesteps.device)
        snr = self.snr.to(timesteps.device)[timesteps]
        clipped = torch.clamp(snr, max=self.min_snr_gamma)
        return clipped / (snr + 1) if self.prediction_type == "v_prediction" else clipped / snr

    def predicted_x0(self, x_t: Tensor, model_output: Tensor, timesteps: Tensor) -> Tensor:
        """x_0 implied by a model output (for validation pictures)."""
        a = self.scheduler.alphas_cumprod.to(x_t.device)[timesteps].float()
        a = a.reshape(*timesteps.shape, *([1] * (x_t.ndim - timesteps.ndim)))
        if self.prediction_type == "epsilon":
            return (x_t - (1 - a).sqrt() * model_output) / a.sqrt()
        return a.sqrt() * x_t - (1 - a).sqrt() * model_output
