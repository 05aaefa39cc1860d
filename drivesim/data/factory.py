"""Build a clip dataset from a `data=` config node (conf/data/*.yaml)."""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset

from drivesim.data.nuscenes import NuScenesClips
from drivesim.data.videos import VideoFolderClips


def get_option(cfg: Any, key: str, default: Any = None) -> Any:
    return cfg.get(key, default) if hasattr(cfg, "get") else getattr(cfg, key, default)


def build_dataset(cfg: Any, split: str | None = None) -> Dataset:
    """`cfg` is a data config (DictConfig or the dataclass); `split` None means every scene/file."""
    name = get_option(cfg, "name")
    for key in ("frames", "size"):
        if get_option(cfg, key) is None:
            raise ValueError(f"data.{key} is not set: give it (data.{key}=...) or let `drivesim train` "
                             "derive it from the model")
    common = dict(
        frames=int(get_option(cfg, "frames")), fps=float(get_option(cfg, "fps")), size=tuple(int(s) for s in get_option(cfg, "size")),
        split=split, on_error=str(get_option(cfg, "on_error", "raise")), stride=get_option(cfg, "stride"),
        horizon=int(get_option(cfg, "horizon", 4)), waypoint_dt=float(get_option(cfg, "waypoint_dt", 0.5)),
        seed=int(get_option(cfg, "seed", 0)), val_fraction=float(get_option(cfg, "val_fraction", 0.2)),
    )
    if name in ("nuscenes", "synthetic"):
        return NuScenesClips(
            get_option(cfg, "root"), version=str(get_option(cfg, "version")), camera=str(get_option(cfg, "camera", "CAM_FRONT")),
            max_gap=get_option(cfg, "max_gap"), min_visibility=int(get_option(cfg, "min_visibility", 1)), **common,
        )
    if name == "videos":
        return VideoFolderClips(get_option(cfg, "root"), **common)
    if name == "images":
        from drivesim.data.images import ImageFolderClips

        for key in ("stride",):
            common.pop(key)
        return ImageFolderClips(get_option(cfg, "root"), prompt=str(get_option(cfg, "prompt", "")), **common)
    raise ValueError(f"data.name must be one of nuscenes, synthetic, videos, images; got {name!r}")
