"""Shipped weights of drivesim's metric networks: file names, version ids, loading and saving.

Weights live in `drivesim/metrics/weights/` (or `$DRIVESIM_METRIC_WEIGHTS`) as safetensors whose
metadata holds the version id, the network config and the training record. A missing file is one
line naming it and the command that trains it; nothing is ever substituted.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from drivesim.atomic import atomic_path
from drivesim.metrics.extractors import MissingExtractorError, sha256_file

WEIGHTS_ENV = "DRIVESIM_METRIC_WEIGHTS"


@dataclass(frozen=True)
class NetSpec:
    kind: str  # "layout" | "attributes"
    version: str  # the version id results record
    filename: str
    what: str


LAYOUT_NET = NetSpec("layout", "layout-seg-v1", "layout-seg-v1.safetensors",
                     "drivesim's layout segmentation network")
ATTRIBUTE_NET = NetSpec("attributes", "synth-attr-v3", "synth-attr-v3.safetensors",
                        "drivesim's synthetic attribute encoder")
NETS = {spec.kind: spec for spec in (LAYOUT_NET, ATTRIBUTE_NET)}


def weights_dir() -> Path:
    env = os.environ.get(WEIGHTS_ENV)
    return Path(env) if env else Path(__file__).resolve().parents[1] / "weights"


def weights_path(spec: NetSpec) -> Path:
    return weights_dir() / spec.filename


@dataclass(frozen=True)
class LoadedNet:
    module: nn.Module
    spec: NetSpec
    path: Path
    sha256: str
    metadata: dict[str, Any]

    def record(self) -> dict[str, Any]:
        return {"name": self.spec.version, "file": str(self.path), "sha256": self.sha256,
                "training": self.metadata.get("training", {})}


def save_net(module: nn.Module, spec: NetSpec, path: Path, config: dict, training: dict) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    meta = {"version": spec.version, "config": json.dumps(config), "training": json.dumps(training)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def read_metadata(path: Path) -> dict[str, Any]:
    with safe_open(str(path), framework="pt") as fh:
        raw = fh.metadata() or {}
    return {"version": raw.get("version"), "config": json.loads(raw.get("config", "{}")),
            "training": json.loads(raw.get("training", "{}"))}


def load_net(spec: NetSpec, build: Any, path: str | Path | None = None) -> LoadedNet:
    """Load `spec`'s weights into `build(config_dict)`; raise MissingExtractorError if absent."""
    where = Path(path) if path else weights_path(spec)
    if not where.is_file():
        raise MissingExtractorError(
            f"the {spec.kind} metric needs {spec.what} {where} ({spec.version}): train it with "
            f"`python -m drivesim.metrics.nets.train {spec.kind}` or set ${WEIGHTS_ENV} to a folder holding it")
    meta = read_metadata(where)
    if meta["version"] != spec.version:
        raise ValueError(f"{where}: version {meta['version']!r}, expected {spec.version!r}")
    module = build(meta["config"])
    try:
        module.load_state_dict(load_file(str(where)), strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{where}: weights do not fit {spec.version} ({str(exc).splitlines()[0]})") from exc
    return LoadedNet(module.eval(), spec, where, sha256_file(where), meta)
