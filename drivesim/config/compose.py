"""Compose a subcommand's config from conf/ with Hydra, turning every config error into one line."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from drivesim.config.store import register_schemas


def _conf_dir() -> Path:
    """$DRIVESIM_CONF; else the copy a non-editable install puts inside the package (drivesim/conf,
    see setup.py); else conf/ beside the package (the checkout, installed in editable mode)."""
    override = os.environ.get("DRIVESIM_CONF")
    if override:
        return Path(override)
    packaged = Path(__file__).resolve().parents[1] / "conf"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "conf"


CONF_DIR = _conf_dir()
_SKIPPED_GROUPS = ("schema", "hydra")


class ConfigError(ValueError):
    """A config that does not compose or validate; its message is one line naming the key."""


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    # OmegaConf appends "full_key: ... object_type=..." context; keep the useful head.
    for marker in (" full_key:", " object_type=", " Config search path:"):
        head, sep, _ = text.partition(marker)
        if sep:
            text = head
    return text.strip()


def _check_schema_keys(node: DictConfig, prefix: str) -> None:
    """Hydra's `+key=value` appends even in struct mode; a key its schema lacks is still a typo."""
    node_type = OmegaConf.get_type(node)
    allowed: set[str] | None = None
    schema_name = ""
    if isinstance(node_type, type) and dataclasses.is_dataclass(node_type):
        allowed = {f.name for f in dataclasses.fields(node_type)}
        schema_name = node_type.__name__
    for key in node.keys():
        key = str(key)
        full = prefix + key
        if allowed is not None and key not in allowed:
            raise ConfigError(f"Key '{full}' is not in the schema {schema_name}")
        child = node._get_node(key)
        if isinstance(child, DictConfig) and not child._is_missing() and not child._is_none():
            _check_schema_keys(child, f"{full}.")


def _record_scenario_source(cfg: DictConfig, choice: str | None, overrides: list[str], conf_dir: Path) -> None:
    """`scenario.source`: the conf/scenario file the scenario's fields came from, so that its errors name that
    file (and a file without `name:` is named after it) - not the schema's default or a file that does not exist."""
    node = cfg.get("scenario")
    if not choice or not isinstance(node, DictConfig) or "source" not in node or node.get("source"):
        return
    source = str(conf_dir / "scenario" / f"{choice}.yaml")
    edited = [o.split("=", 1)[0].lstrip("+~") for o in overrides]
    if any(k.startswith("scenario.") and k not in ("scenario.path", "scenario.source") for k in edited):
        source += " (with scenario.* overrides)"
    node.source = source
    if not node.get("name"):  # a file without `name:` is named after itself, overrides or not
        node.name = choice.rsplit("/", 1)[-1]


def compose_command(command: str, overrides: list[str], conf_dir: Path = CONF_DIR) -> DictConfig:
    """Compose `conf/<command>.yaml` with `overrides`, validated against the command's schema."""
    if not (conf_dir / f"{command}.yaml").is_file():
        raise ConfigError(f"no config {conf_dir / (command + '.yaml')}: run from a drivesim checkout "
                          "(pip install -e .) or set DRIVESIM_CONF to its conf/ folder")
    register_schemas()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
            try:
                cfg = compose(config_name=command, overrides=overrides, return_hydra_config=True)
            except (AssertionError, AttributeError) as exc:  # Hydra/OmegaConf setting a field under a null node
                if "NoneType" not in str(exc):
                    raise
                raise ConfigError(f"cannot apply the overrides {' '.join(overrides)} ({_one_line(exc)}): a field of a "
                                  "config node that is null here (e.g. model.conditioning of model=sd15) cannot be set "
                                  "from the command line; choose a preset that has it") from exc
        choices = {str(k): v for k, v in cfg.hydra.runtime.choices.items()}
        with open_dict(cfg):
            del cfg["hydra"]
        _record_scenario_source(cfg, choices.get("scenario"), overrides, conf_dir)
        missing = sorted(OmegaConf.missing_keys(cfg))
        if missing:
            raise ConfigError(f"missing required value for {', '.join(missing)} (set it as key=value)")
        _check_schema_keys(cfg, "")
        OmegaConf.resolve(cfg)
    except ConfigError:
        raise
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        message = _one_line(exc)
        if cause is not exc and _one_line(cause) not in message:
            message = f"{message}: {_one_line(cause)}"
        raise ConfigError(message) from exc
    finally:
        GlobalHydra.instance().clear()
    return cfg


def config_groups(conf_dir: Path = CONF_DIR) -> dict[str, list[str]]:
    """Options of every config group in conf/, nested groups as `dir/subdir` (for --help)."""
    groups: dict[str, list[str]] = {}
    for group_dir in sorted(p for p in conf_dir.rglob("*") if p.is_dir()):
        name = group_dir.relative_to(conf_dir).as_posix()
        options = sorted(p.stem for p in group_dir.glob("*.yaml"))
        if options and name.split("/")[0] not in _SKIPPED_GROUPS:
            groups[name] = options
    return groups
