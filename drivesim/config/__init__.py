"""Typed (dataclass) config schemas and the Hydra composition every CLI subcommand goes through."""

from drivesim.config.compose import ConfigError, compose_command, config_groups

__all__ = ["ConfigError", "compose_command", "config_groups"]
