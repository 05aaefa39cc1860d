"""Schemas of the config groups without a module of their own (stage, trainer, sampler, scenario).

Issues that land a capability extend the matching dataclass (and only it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING


@dataclass
class StageConfig:
    """Which part of the cascade trains, what it conditions on, and its loss (drivesim.training)."""

    name: str = MISSING
    # Weight groups the stage updates (spatial, condition, temporal); empty: the stage's default.
    train_groups: list[str] = field(default_factory=list)
    # Context frames S drawn per sample (temporal stage); the first S frames are given, not denoised.
    context_frames: list[int] = field(default_factory=lambda: [0, 1, 2])
    # Given frames are noise-augmented at a level drawn uniformly in [0, context_noise_max].
    context_noise_max: float = 0.3
    # Interpolation: every `interpolation_factor`-th frame is a given key frame (T -> factor*(T-1)+1).
    interpolation_factor: int = 4
    # Interpolation pass id fed to the stage-id embedding (0: first x4 pass, 1: the second).
    stage_id: int = 0
    # Extra probability of dropping only the waypoints (a policy may give speed without a plan).
    waypoint_dropout: float = 0.1
    # Fraction of samples trained image-only (temporal layers bypassed): joint image batches.
    image_fraction: float = 0.0
    # Training timesteps are floor(n u^p) with u uniform (p = timestep_power; 1: uniform). p < 1 draws high
    # noise more often: there the given frames decide what the clip shows, while below t ~ 700 the noisy
    # frame alone says more than a copy of the last given frame (session 8, bench_context_use).
    timestep_power: float = 1.0
    # Temporal stage: denoise each frame's difference to its nearest given frame before it (the anchor),
    # not the frame itself: a model that has not yet learnt to read its context continues the last given
    # frame instead of starting a new scene (session 9). Generation adds the anchor back; context guidance
    # cannot combine branches with different anchors, so it is refused for such a model.
    anchor_to_given: bool = False
    # Video stages: the training noise shares this part of its variance across a clip's frames (PYoCo's
    # mixed-noise prior; 0: independent per frame). A model sampled with `sampler.noise_correlation` R sees
    # such noise at every step, so training on R keeps the sampler in distribution (session 15).
    noise_correlation: float = 0.0
    # Learning rate of the context blend's strengths (model.conditioning.context_blend): a small table whose
    # least-squares values reach ~0.85 at high noise, too far for the trainer's lr in a few thousand steps.
    context_blend_lr: float = 0.01
    # min-SNR-gamma loss weighting (Hang et al. 2023); null: uniform.
    min_snr_gamma: float | None = None
    # The space the MSE is measured in (epsilon / v_prediction); null: the model's own prediction type.
    loss_space: str | None = None
    # Train on latents cached once by the frozen autoencoder (diffusion stages).
    cache_latents: bool = True
    # Autoencoder stage: random crop (H, W) of each frame (null: full frames) and the loss weights.
    patch: list[int] | None = None
    ssim_weight: float = 0.2
    kl_weight: float = 1e-6
    # Autoencoder stage: rotate each frame's hue by a random angle (and scale its saturation by a factor
    # in [1, colour_saturation_max]) with this probability, so that the latents must carry the colour of
    # every region - the base world's few colours otherwise let small objects decode grey (issue 12).
    colour_augment: float = 0.0
    colour_saturation_max: float = 2.0
    # Autoencoder stage: with this probability a frame gets 1-4 flat rectangles of random saturated colour,
    # sides in colour_patch_size pixels (object scale), and the weight of an L1 on the YCbCr chroma planes.
    colour_patches: float = 0.0
    colour_patch_size: list[int] = field(default_factory=lambda: [8, 48])
    chroma_weight: float = 0.0
    # Upsampler: output / input size, and the low-res latents' noise-augmentation level drawn uniformly
    # in [0, noise_aug_max] (the model receives it); patches are `model.latent_size` latents.
    upscale: int = 4
    noise_aug_max: float = 0.5
    # Upsampler: what the low-res frames enter as. `upscaled`: the frames upscaled x`upscale` (bilinear)
    # and encoded, a guess in the output's own latent space; `latents`: their own latents repeated
    # x`upscale` (nearest; sessions 6-12, which the tiny model hardly learnt to read). `guess_blend`
    # (upscaled only) also blends the output with that guess by a learned strength per noise level
    # (ContextBlend.blend_guess; lr `context_blend_lr`).
    lowres_input: str = "upscaled"
    guess_blend: bool = True
    # Decoder: weight of the 3D-conv patch discriminator's hinge loss (on from step `disc_start`).
    disc_weight: float = 0.1
    disc_start: int = 0
    # Decoder: decode latents drawn from the posterior per frame (the jitter it learns to smooth), not its mean.
    sample_latents: bool = True
    # Decoder: how its temporal convs pad time (replicate: end frames see themselves, not black; zeros:
    # exports before session 13, which load with zeros).
    temporal_padding: str = "replicate"
    # LoRA (DreamBooth): adapter rank and alpha (null: = rank) on the spatial attention; prior
    # preservation weight (0: off) of the distillation towards the frozen base model's unconditional output.
    lora_rank: int = 4
    lora_alpha: int | None = None
    lora_targets: str = "attention"  # attention | attention+conv (spatial ResNet convs too; never temporal)
    prior_weight: float = 0.0


@dataclass
class TrainerConfig:
    """The Lightning loop: devices and strategy, steps, optimisation, checkpoints, EMA, validation."""

    accelerator: str = "cpu"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"  # auto | ddp (fsdp is refused: training/run.check_strategy)
    max_steps: int = 100
    precision: str = "32-true"
    log_every_n_steps: int = 10
    checkpoint_every_n_steps: int = 100
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    gradient_clip_val: float | None = 1.0
    accumulate_grad_batches: int = 1
    gradient_checkpointing: bool = False
    # EMA of the trained weights with warm-up: decay = min(ema_decay, (1 + step) / (10 + step)).
    ema: bool = True
    ema_decay: float = 0.999
    # Validation (loss per noise-level bucket, sample clips) every N steps; 0 = off.
    val_every_n_steps: int = 0
    val_batches: int = 2
    sample_clips: int = 1
    sample_steps: int = 10
    deterministic: bool = False
    threads: int | None = None  # torch intra-op threads; null: torch's default
