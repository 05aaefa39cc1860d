"""The `scenario` config group -> a `Scenario`: inline fields, a file (`scenario.path`), or (elsewhere) a replay."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from drivesim.scenario.spec import TOP_KEYS, Scenario, load_scenario, parse_scenario


def scenario_from_config(cfg: DictConfig | Any) -> Scenario:
    """A hand-written scenario from the config group; `scenario.path` takes a file instead of inline fields."""
    if cfg.get("path"):
        return load_scenario(cfg.path)
    data = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    assert isinstance(data, dict)
    fields = {k: v for k, v in data.items() if k in TOP_KEYS and v not in (None, [], {})}
    source = data.get("source") or f"conf/scenario/{data.get('name') or 'scenario'}.yaml"
    return parse_scenario(fields, str(source))
