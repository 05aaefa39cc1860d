"""The three weight groups of a video UNet and their safetensors files (DESIGN.md section 3).

`spatial` is the source image UNet's keys, `condition` the condition encoders (`condition_*`),
`temporal` the layers over time (`temporal_*`). Each group saves on its own, so temporal weights load
onto any spatial backbone of the same architecture.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from drivesim.atomic import atomic_path

GROUPS = ("spatial", "condition", "temporal")
NON_SPATIAL = ("condition", "temporal")
_PREFIXES = {"condition": "condition_", "temporal": "temporal_"}


def group_of(key: str) -> str:
    """The group a state-dict key belongs to."""
    for group, prefix in _PREFIXES.items():
        if key.startswith(prefix):
            return group
    return "spatial"


def weight_groups(model: nn.Module) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {g: [] for g in GROUPS}
    for key in model.state_dict():
        groups[group_of(key)].append(key)
    return groups


def _check_groups(groups: Iterable[str]) -> tuple[str, ...]:
    groups = tuple(groups)
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise ValueError(f"unknown weight group(s) {unknown}; the groups are {list(GROUPS)}")
    return groups


def save_tensors(tensors: dict[str, Tensor], path: str | Path, metadata: dict[str, str]) -> None:
    """Write tensors to a safetensors file atomically (temp file, then rename): a killed write never
    leaves a partial file in place of a good one."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata={"format": "pt", **metadata})


def save_groups(model: nn.Module, groups: Iterable[str], path: str | Path) -> None:
    """Write the groups' tensors to a safetensors file atomically."""
    groups = _check_groups(groups)
    tensors = {k: v for k, v in model.state_dict().items() if group_of(k) in groups}
    save_tensors(tensors, path, {"drivesim_groups": ",".join(groups)})


def load_groups(model: nn.Module, groups: Iterable[str], path: str | Path) -> None:
    """Load exactly the groups' keys from `path`; a missing, extra or wrong-shape key is an error."""
    groups = _check_groups(groups)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weight file {path} does not exist")
    try:
        loaded = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"{path} is not a readable safetensors file: {exc}") from exc
    own = {k: v for k, v in model.state_dict().items() if group_of(k) in groups}
    for key, value in own.items():
        if key not in loaded:
            raise KeyError(f"{path}: missing key {key!r} of group {group_of(key)!r}")
        if tuple(loaded[key].shape) != tuple(value.shape):
            raise ValueError(f"{path}: key {key!r} has shape {tuple(loaded[key].shape)}, "
                             f"the model expects {tuple(value.shape)}")
    extra = sorted(set(loaded) - set(own))
    if extra:
        raise KeyError(f"{path}: unexpected key {extra[0]!r} ({len(extra)} keys not in groups {list(groups)} "
                       "of this model)")
    with torch.no_grad():
        model.load_state_dict(loaded, strict=False)


def freeze_group(model: nn.Module, group: str, frozen: bool = True) -> None:
    """Stop (or restart) gradients for one group's parameters."""
    _check_groups((group,))
    for name, param in model.named_parameters():
        if group_of(name) == group:
            param.requires_grad_(not frozen)
