"""Train/val scene splits: the official nuScenes ones for real versions, seeded ones otherwise."""

from __future__ import annotations

import logging

import numpy as np
from nuscenes.utils.splits import create_splits_scenes

log = logging.getLogger(__name__)

#: version -> {our split name -> devkit split name}
OFFICIAL = {
    "v1.0-trainval": {"train": "train", "val": "val", "train_detect": "train_detect", "train_track": "train_track"},
    "v1.0-mini": {"train": "mini_train", "val": "mini_val", "mini_train": "mini_train", "mini_val": "mini_val"},
    "v1.0-test": {"test": "test"},
}


def split_scenes(
    version: str, scene_names: list[str], split: str | None, seed: int = 0, val_fraction: float = 0.2
) -> list[str]:
    """The names in `scene_names` that belong to `split` (None: all of them), in their given order."""
    if split is None:
        return list(scene_names)
    official = create_splits_scenes()
    known = set().union(*official.values())
    if version in OFFICIAL and not known.intersection(scene_names):
        # Data of another origin under an official version name: no official split can apply.
        log.warning("%s: none of the %d scenes has an official nuScenes name; using a seeded split", version, len(scene_names))
    elif version in OFFICIAL:
        name = OFFICIAL[version].get(split, "")
        if name not in official:
            raise ValueError(f"split {split!r} is not defined for {version} (have {sorted(OFFICIAL[version])})")
        members = set(official[name])
        unknown = [s for s in scene_names if s not in known]
        if unknown:
            log.warning("%s: %d scene(s) are in no official split and left out of %r (e.g. %s)", version, len(unknown), split, unknown[0])
        return [s for s in scene_names if s in members]
    if split not in ("train", "val"):
        raise ValueError(f"split must be None, 'train' or 'val' for {version}, got {split!r}")
    ordered = sorted(scene_names)
    n_val = 0 if len(ordered) < 2 else max(1, int(round(val_fraction * len(ordered))))
    order = np.random.default_rng(seed).permutation(len(ordered))
    val = {ordered[i] for i in order[:n_val]}
    return [s for s in scene_names if (s in val) == (split == "val")]
