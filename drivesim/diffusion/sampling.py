"""Samplers over `(B, T, C, H, W)` video latents: diffusers schedulers built from the training schedule.

`make_scheduler(name, schedule)` builds DDIM, DPM-Solver++ 2M or Euler from the training
`DDPMScheduler` config (so betas and prediction type match the model). `sample_video` runs the loop:
the given (context) frames are re-imposed before every model call at the current noise level and
set to their clean latents at the end, as the prediction and interpolation models were trained.
With `init_strength` < 1 the loop starts part-way down the schedule from a guess of the clean
frames noised to that level (SDEdit): the frames to generate start from their given neighbours
(`context_init`), the upsampler's from its low-res input. Randomness comes only from the
`generator` passed in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler
from torch import Tensor

from drivesim.models.condition import VideoCondition

SAMPLERS: dict[str, tuple[Any, dict[str, Any]]] = {
    "ddim": (DDIMScheduler, {}),
    "dpmpp_2m": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "euler": (EulerDiscreteScheduler, {}),
}
Denoiser = Callable[[Tensor, Tensor, VideoCondition], Tensor]


def make_scheduler(name: str, schedule: Mapping[str, Any], timestep_spacing: str | None = None,
                   eta: float = 0.0) -> Any:
    """A fresh diffusers scheduler `name` over the training noise `schedule` (a scheduler config dict)."""
    if name not in SAMPLERS:
        raise ValueError(f"sampler.name must be one of {', '.join(SAMPLERS)}, got {name!r}")
    cls, extra = SAMPLERS[name]
    overrides = dict(extra)
    if timestep_spacing is not None:
        overrides["timestep_spacing"] = timestep_spacing
    scheduler = cls.from_config(dict(schedule), **overrides)
    scheduler.eta_for_step = float(eta)
    return scheduler


@dataclass(frozen=True)
class GivenFrames:
    """Clean latents (B, T, C, H, W) of the frames that are given, not denoised, and their mask (B, T)."""

    latents: Tensor
    mask: Tensor

    def impose(self, x: Tensor, values: Tensor) -> Tensor:
        m = self.mask.to(torch.bool).reshape(*self.mask.shape, 1, 1, 1)
        return torch.where(m, values.to(x.dtype), x)


def frame_correlated_noise(noise: Tensor, correlation: float, generator: torch.Generator | None = None) -> Tensor:
    """`noise` (B, T, C, H, W) with a share `correlation` of its variance common to the T frames of each sample.

    Every frame stays N(0, 1); two frames of a sample correlate by `correlation`. The shared part is drawn
    after `noise` (from `generator`), so 0 returns `noise` itself and leaves the random stream as it was.
    Why: a model sampled from independent noise per frame paints each frame's texture anew, which a weak
    temporal stack cannot fully reconcile (flicker); a common part gives the frames a common start
    (PYoCo's mixed-noise prior; `stage.noise_correlation` trains a model on the same prior).
    """
    if not 0.0 <= correlation < 1.0:
        raise ValueError(f"sampler.noise_correlation must lie in [0, 1), got {correlation}")
    if correlation == 0.0 or noise.shape[1] < 2:
        return noise
    shared = torch.randn((noise.shape[0], 1, *noise.shape[2:]), generator=generator, dtype=noise.dtype,
                         device=noise.device)
    return mix_shared_noise(noise, shared, correlation)


def mix_shared_noise(noise: Tensor, shared: Tensor, correlation: float) -> Tensor:
    """Independent `noise` (B, T, ...) and one `shared` draw per sample (B, 1, ...) mixed so that every frame
    stays N(0, 1) and two frames correlate by `correlation` - the sampler's and the trainer's one formula."""
    return correlation ** 0.5 * shared + (1.0 - correlation) ** 0.5 * noise


def context_init(given: GivenFrames) -> Tensor:
    """A guess of every frame from the given ones (`context_guess`): a frame between two given frames is
    their blend by distance, one after (before) all of them the last (first) given frame."""
    from drivesim.models.conditioning.context import context_guess, nearest_given_index

    before, after = nearest_given_index(given.mask)
    if not bool(((before >= 0) | (after < given.mask.shape[1])).all()):
        raise ValueError("init_strength < 1 needs at least one given frame in every sample")
    return context_guess(given.latents, given.mask)[0]


def sample_video(denoiser: Denoiser, scheduler: Any, noise: Tensor, cond: VideoCondition, steps: int,
                 given: GivenFrames | None = None, generator: torch.Generator | None = None,
                 init: Tensor | None = None, init_strength: float = 1.0) -> Tensor:
    """Denoise `noise` (B, T, C, H, W) in `steps` scheduler steps -> clean latents (B, T, C, H, W).

    `given` frames are noised to each step's level with one fixed draw (`generator`) and put in place
    of the sample's frames before every model call; the result carries their clean latents exactly.
    `init` (a clean-latent guess, B, T, C, H, W) with `init_strength` in (0, 1): only the last
    round(steps x strength) steps run, from `init` noised to the first of them.
    """
    if noise.ndim != 5:
        raise ValueError(f"noise must be (B, T, C, H, W), got {tuple(noise.shape)}")
    if steps < 1:
        raise ValueError(f"sampler.steps must be >= 1, got {steps}")
    if not 0.0 < init_strength <= 1.0:
        raise ValueError(f"sampler.init_strength must lie in (0, 1], got {init_strength}")
    scheduler.set_timesteps(steps, device=noise.device)
    timesteps = scheduler.timesteps
    if init is not None and init_strength < 1.0:
        run = max(1, round(steps * init_strength))
        start = len(timesteps) - run * int(getattr(scheduler, "order", 1))
        timesteps = timesteps[start:]
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(start)
        x = scheduler.add_noise(init.to(noise.dtype), noise, timesteps[:1])
    else:
        x = noise * scheduler.init_noise_sigma
    given_noise = None
    if given is not None:
        given_noise = torch.randn(given.latents.shape, generator=generator, device=noise.device,
                                  dtype=noise.dtype)
    step_kwargs: dict[str, Any] = {"generator": generator}
    if isinstance(scheduler, DDIMScheduler):
        step_kwargs["eta"] = float(getattr(scheduler, "eta_for_step", 0.0))
    for t in timesteps:
        if given is not None:
            assert given_noise is not None
            noised = scheduler.add_noise(given.latents.to(x.dtype), given_noise, t.reshape(1))
            x = given.impose(x, noised)
        model_in = scheduler.scale_model_input(x, t)
        out = denoiser(model_in, t.reshape(1).expand(x.shape[0]), cond)
        x = scheduler.step(out, t, x, **step_kwargs).prev_sample
    if given is not None:
        x = given.impose(x, given.latents)
    return x
