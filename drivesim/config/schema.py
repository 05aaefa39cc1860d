"""Top-level schemas of the CLI subcommands; each config group keeps its own schema module.

Every node is a dataclass so OmegaConf runs in struct mode: a typo is an error, not a silent default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from drivesim.config.protocol import ProtocolConfig


@dataclass
class TrainConfig:
    model: Any = MISSING
    data: Any = MISSING
    stage: Any = MISSING
    trainer: Any = MISSING
    out: str = "outputs/train"
    seed: int = 0
    resume: bool = True
    # Where latent caches live; null: $DRIVESIM_CACHE or ~/.cache/drivesim.
    cache_dir: str | None = None


@dataclass
class GenerateConfig:
    """`drivesim generate`: exports -> a long, conditioned driving video (drivesim.pipelines.run)."""

    sampler: Any = MISSING
    scenario: Any = MISSING
    checkpoint: str | None = None  # a temporal (prediction) export, or a cascade folder of exports
    interpolation: str | None = None  # an interpolation export (x4 per pass)
    interpolation_passes: int = 1  # 2: x16
    interpolation_sampler: Any = None  # the interpolation stage's own sampler settings (a sampler node); null: sampler
    upsampler: str | None = None  # an upsampler export: video_hr.mp4 beside video.mp4
    upsample_seconds: float | None = None  # seconds upsampled; null: 2 on CPU, all on GPU
    decoder: str | None = None  # a decoder export (temporal VAE decoder) decodes the frames
    lora: str | None = None  # a lora export: personalised spatial weights under the trained temporal layers
    out: str = "outputs/generate"
    seconds: float | None = None  # null: the scenario's seconds, else 10
    seed: int = 0
    seeds: list[int] | None = None  # several: one subfolder per seed
    device: str = "cpu"
    precision: str = "fp32"  # fp32 | bf16 | fp16 | auto (bf16 where native; the models; sampling maths stays fp32)
    resume: bool = True
    context_frames: int = 2  # keys each prediction call conditions on
    # Frames of one prediction call, its context included; null: the export's clip length. Fewer new keys
    # per call keep each one nearer its given frames (the context blend's strength falls with distance).
    prediction_window: int | None = None
    decode_chunk: int = 8  # frames per VAE decoder call
    # video: one folder per seed; nuscenes: out= is a nuScenes-format dataset, one scene per scenario and
    # seed appended (drivesim.pipelines.nuscenes_export), rollouts kept under out/rollouts/
    format: str = "video"
    dataset_version: str = "v1.0-generated"
    # Scale-out (drivesim.pipelines.predict): every scenario file of a folder, or with scenario=replay every
    # scene of a split (train | val | all), times the seeds, through Lightning predict on `trainer=`.
    scenarios: str | None = None
    replay_split: str | None = None
    trainer: Any = None  # a conf/trainer/ preset (predict_cpu, predict_ddp_cpu, predict_gpus); null: one CPU process


@dataclass
class EvaluateConfig:
    """`drivesim evaluate`: generated videos against real data (`data=<group>` or `real=<folder>`)."""

    protocol: ProtocolConfig = MISSING
    data: Any = None
    generated: str = MISSING
    real: str | None = None
    out: str = "outputs/evaluate"
    # null: every metric the inputs, ground truth and available networks allow; a list: exactly those.
    metrics: list[str] | None = None
    inception: str | None = None
    i3d: str | None = None
    # A local TorchScript detector for layout adherence on real data (null: drivesim's synthetic net).
    layout_detector: str | None = None
    # Cache real-side features per dataset, protocol and extractor hash (in $DRIVESIM_CACHE/features).
    cache: bool = True
    # Frames per network call (FID Inception, layout net): 8 measured fastest on 2 CPU cores (session 12).
    batch_size: int = 8


@dataclass
class DemoConfig:
    """`drivesim demo` (drivesim.demo): the shipped cascade replays a held-out synthetic scene."""

    sampler: Any = MISSING  # prediction (and first-frame) sampler, conf/sampler/
    interpolation_sampler: Any = MISSING  # the interpolation stage's own sampler
    out: str = "outputs/demo"
    cascade: str | None = None  # a cascade folder of exports; null: the packaged drivesim/assets/demo_cascade
    seconds: float = 60.0
    seed: int = 0
    protocol: str = "synth-bench-v1"  # its first held-out seed gives the scene; its metrics are measured
    scene_seed: int | None = None  # null: the protocol's first held-out seed (never a training seed)
    context_frames: int = 2  # the scene's first rendered key frames given as context
    prediction_window: int | None = None  # frames of one prediction call (generate's prediction_window)
    # A cascade without an interpolation export: true runs at the prediction export's key rate (said in
    # the log and run.json); false exits 2.
    allow_missing_interpolation: bool = True
    metrics: list[str] = field(default_factory=lambda: ["fid_synth", "fvd_synth", "layout", "temporal", "action"])
    device: str = "cpu"
    precision: str = "fp32"  # as generate's; the demo's conf/demo.yaml: auto
    decode_chunk: int = 8
    resume: bool = True
