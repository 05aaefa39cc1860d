"""Top-level schemas of the CLI subcommands; each config group keeps its own schema module.

Every node is a dataclass so OmegaConf runs in struct mode: a typo is an error, not a silent default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from drivesim.config.protocol import ProtocolConfig
from drivesim.config.synth import SynthConfig


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
    out: str = "outputs/generate"
    seconds: float | None = None  # null: the scenario's seconds, else 10
    seed: int = 0
    seeds: list[int] | None = None  # several: one subfolder per seed
    device: str = "cpu"
    precision: str = "fp32"  # fp32 | bf16 | fp16 (the model; sampling maths stays fp32)
    resume: bool = True
    context_frames: int = 2  # keys each prediction call conditions on
    decode_chunk: int = 8  # frames per VAE decoder call


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
    batch_size: int = 16


@dataclass
class DemoConfig:
    out: str = "outputs/demo"
    synth: SynthConfig = field(default_factory=SynthConfig)
