"""Registers every schema with Hydra's ConfigStore under `schema/<group>/<option>`."""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from drivesim.config import data, generate, groups, model, schema
from drivesim.config.protocol import ProtocolConfig
from drivesim.config.synth import SynthConfig

_GROUP_SCHEMAS: dict[str, dict[str, type]] = {
    "model": {"base": model.ModelConfig},
    "data": {
        "synthetic": data.SyntheticDataConfig,
        "nuscenes": data.NuScenesDataConfig,
        "videos": data.VideoDataConfig,
        "images": data.ImageDataConfig,
    },
    "stage": {"base": groups.StageConfig},
    "trainer": {"base": groups.TrainerConfig},
    "sampler": {"base": generate.SamplerConfig},
    "scenario": {"base": generate.ScenarioConfig},
    "protocol": {"base": ProtocolConfig},
}

_COMMAND_SCHEMAS: dict[str, type] = {
    "train": schema.TrainConfig,
    "generate": schema.GenerateConfig,
    "evaluate": schema.EvaluateConfig,
    "synth": SynthConfig,
    "demo": schema.DemoConfig,
}


def register_schemas() -> None:
    """Idempotent: ConfigStore simply replaces an entry stored twice."""
    store = ConfigStore.instance()
    for group, options in _GROUP_SCHEMAS.items():
        for option, node in options.items():
            store.store(group=f"schema/{group}", name=option, node=node)
    for command, node in _COMMAND_SCHEMAS.items():
        store.store(group="schema/command", name=command, node=node)
