"""Top-level schemas of the CLI subcommands; each config group keeps its own schema module.

Every node is a dataclass so OmegaConf runs in struct mode: a typo is an error, not a silent default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

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


@dataclass
class GenerateConfig:
    model: Any = MISSING
    sampler: Any = MISSING
    scenario: Any = MISSING
    checkpoint: str | None = None
    out: str = "outputs/generate"
    seconds: float = 10.0
    seed: int = 0


@dataclass
class EvaluateConfig:
    data: Any = MISSING
    generated: str = MISSING
    out: str = "outputs/evaluate"
    metrics: list[str] = field(default_factory=lambda: ["fid", "fvd"])
    inception: str | None = None
    i3d: str | None = None
    seed: int = 0


@dataclass
class DemoConfig:
    out: str = "outputs/demo"
    synth: SynthConfig = field(default_factory=SynthConfig)
