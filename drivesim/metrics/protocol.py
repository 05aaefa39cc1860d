"""Named protocols (conf/protocol/<name>.yaml) and the protocol record every result carries."""

from __future__ import annotations

import datetime as _dt
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from drivesim.config.compose import CONF_DIR
from drivesim.config.protocol import ProtocolConfig

#: Keys every protocol record holds (tests check them; the leaderboard groups by `name`).
RECORD_KEYS = ("name", "dataset", "split", "clip_frames", "fps", "stride", "size", "resize", "context_frames",
               "count_context", "fid_frame_stride", "layout_frame_stride", "max_clips", "seed", "held_out_seeds", "extractors", "generated", "real", "created")


def protocol_names(conf_dir: Path = CONF_DIR) -> list[str]:
    return sorted(p.stem for p in (conf_dir / "protocol").glob("*.yaml"))


def load_protocol(name: str, conf_dir: Path = CONF_DIR) -> ProtocolConfig:
    """The protocol `conf/protocol/<name>.yaml` as a typed `ProtocolConfig` (unknown keys are errors)."""
    path = conf_dir / "protocol" / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown protocol {name!r}: no {path} (choose from {', '.join(protocol_names(conf_dir))})")
    raw = OmegaConf.load(path)
    assert isinstance(raw, DictConfig)
    raw.pop("defaults", None)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(ProtocolConfig), raw)
    except Exception as exc:  # noqa: BLE001 - an OmegaConf validation error, as one line naming the file
        raise ValueError(f"{path}: {' '.join(str(exc).split()).split(' full_key:')[0]}") from exc
    out = OmegaConf.to_object(merged)
    assert isinstance(out, ProtocolConfig)
    return check_protocol(out, str(path))


def check_protocol(protocol: ProtocolConfig, where: str) -> ProtocolConfig:
    """Values the schema's types cannot rule out, as one line naming the field."""
    for stride in ("fid_frame_stride", "layout_frame_stride"):
        if int(getattr(protocol, stride)) < 1:
            raise ValueError(f"{where}: {stride} must be >= 1, got {getattr(protocol, stride)}")
    if int(protocol.clip_frames) < 1:
        raise ValueError(f"{where}: clip_frames must be >= 1, got {protocol.clip_frames}")
    return protocol


def as_protocol(value: str | ProtocolConfig | DictConfig | dict) -> ProtocolConfig:
    if isinstance(value, ProtocolConfig):
        return value
    if isinstance(value, str):
        return load_protocol(value)
    merged = OmegaConf.merge(OmegaConf.structured(ProtocolConfig), value)
    out = OmegaConf.to_object(merged)
    assert isinstance(out, ProtocolConfig)
    return check_protocol(out, f"protocol {out.name}")


def plain(value: Any) -> Any:
    """Dataclasses, OmegaConf nodes and tuples -> JSON-ready dicts and lists."""
    if is_dataclass(value) and not isinstance(value, type):
        return plain(asdict(value))
    if isinstance(value, DictConfig):
        return plain(OmegaConf.to_container(value, resolve=True))
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def protocol_record(protocol: ProtocolConfig, extractors: dict[str, Any], generated: dict[str, Any],
                    real: dict[str, Any]) -> dict[str, Any]:
    """Everything needed to reproduce or compare a figure: the protocol, extractor files and hashes,
    what was measured on each side (counts, fps, seeds, splits) and when."""
    from drivesim import __version__

    record = plain(protocol)
    record.update(extractors=plain(extractors), generated=plain(generated), real=plain(real),
                  created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                  drivesim_version=__version__)
    missing = [k for k in RECORD_KEYS if k not in record]
    if missing:
        raise AssertionError(f"protocol record lacks {missing}")
    return record
