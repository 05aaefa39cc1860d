"""Schemas of the config groups without a module of their own (stage, trainer, sampler, scenario).

Issues that land a capability extend the matching dataclass (and only it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING


@dataclass
class StageConfig:
    """Which part of the cascade trains, and which weight groups it updates."""

    name: str = MISSING
    train_groups: list[str] = field(default_factory=list)


@dataclass
class TrainerConfig:
    accelerator: str = "cpu"
    devices: int = 1
    max_steps: int = 100
    precision: str = "32-true"
    log_every_n_steps: int = 10


@dataclass
class SamplerConfig:
    name: str = "ddim"
    steps: int = 25
    eta: float = 0.0
    context_guidance: float = 1.0


@dataclass
class ScenarioConfig:
    name: str = "free_drive"
    seconds: float = 10.0
