"""Training data of the metric networks: synthetic-world renders of seeds disjoint from every protocol's
held-out seeds, read through the ground-truth sidecar (images, instance masks, ego motion, labels)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from drivesim.data.labels import class_index
from drivesim.synth.truth import SceneTruth, load_scene_truth
from drivesim.vocab import LABEL_VOCAB

log = logging.getLogger(__name__)

#: Seeds the layout network trains and validates on (2 scenes x 20 s each); never a protocol's held-out seed.
TRAIN_SEEDS = tuple(range(1000, 1014))
VAL_SEEDS = (1014, 1015)
#: Seeds of the attribute encoder (6 scenes x 10 s each: 192 training scenes, 48 validation scenes).
ATTR_TRAIN_SEEDS = tuple(range(2000, 2032))
ATTR_VAL_SEEDS = tuple(range(2032, 2040))


def check_disjoint(seeds: tuple[int, ...] | list[int]) -> None:
    """Raise if any seed is a held-out seed of a protocol in conf/protocol/."""
    from drivesim.metrics.protocol import load_protocol, protocol_names

    for name in protocol_names():
        clash = sorted(set(seeds) & set(load_protocol(name).held_out_seeds))
        if clash:
            raise ValueError(f"training seeds {clash} are held out by protocol {name}; choose others")


def render_seeds(work: Path, seeds: tuple[int, ...] | list[int], scenes: int, seconds: float,
                 size: tuple[int, int] = (128, 256)) -> list[Path]:
    """One synthetic dataset per seed under work/seed-<s>, rendered only if absent."""
    from drivesim.config.synth import CameraConfig, SynthConfig
    from drivesim.synth.render import render_dataset

    check_disjoint(list(seeds))
    roots = []
    for seed in seeds:
        root = work / f"seed-{seed}"
        if not (root / "synth" / "manifest.json").is_file():
            log.info("rendering training seed %d into %s", seed, root)
            render_dataset(SynthConfig(out=str(root), scenes=scenes, seconds=seconds, seed=seed,
                                       camera=CameraConfig(width=size[1], height=size[0])))
        roots.append(root)
    return roots


def scenes_of(roots: list[Path]) -> list[SceneTruth]:
    out = []
    for root in roots:
        for path in sorted((root / "synth" / "truth").glob("*.json")):
            out.append(load_scene_truth(root, path.stem))
    return out


def read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path}: not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class SegFrames:
    """Every frame of the scenes with its class map: 0 background, k + 1 = CLASSES[k]."""

    def __init__(self, scenes: list[SceneTruth]) -> None:
        self.items = [(s, k) for s in scenes for k in range(len(s.image_paths))]
        self.lookup = {}
        for s in scenes:
            table = np.zeros(max(s.instance_categories, default=0) + 1, np.int64)
            for index, category in s.instance_categories.items():
                table[index] = class_index(category) + 1
            self.lookup[s.scene_name, str(s.image_paths[0].parents[2])] = table

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        scene, k = self.items[i]
        image = read_rgb(scene.image_paths[k])
        mask = scene.load_mask(k).astype(np.int64)
        table = self.lookup[scene.scene_name, str(scene.image_paths[0].parents[2])]
        labels = table[np.minimum(mask, len(table) - 1)]
        return torch.from_numpy(image).permute(2, 0, 1).contiguous(), torch.from_numpy(labels)


@dataclass
class AttrTargets:
    speed: float
    yaw_rate: float
    agents: float
    labels: dict[str, int]  # index into LABEL_VOCAB[name][1:] (no "unknown")


class AttrWindows:
    """Windows of `frames` consecutive 12 Hz frames, every `stride` frames, with their attribute targets."""

    def __init__(self, scenes: list[SceneTruth], frames: int = 8, stride: int = 4) -> None:
        self.frames = frames
        self.items = [(s, start) for s in scenes for start in range(0, len(s.image_paths) - frames + 1, stride)]

    def __len__(self) -> int:
        return len(self.items)

    def targets(self, i: int) -> AttrTargets:
        scene, start = self.items[i]
        sl = slice(start, start + self.frames)
        middle = start + self.frames // 2
        agents = sum(1 for ob in scene.objects[middle] if ob.visible_px > 0)
        labels = {name: LABEL_VOCAB[name].index(scene.labels[name]) - 1 for name in LABEL_VOCAB}
        return AttrTargets(float(scene.ego_speed[sl].mean()), float(scene.ego_yaw_rate[sl].mean()),
                           float(np.log1p(agents)), labels)

    def clip(self, i: int) -> torch.Tensor:
        scene, start = self.items[i]
        images = [read_rgb(scene.image_paths[k]) for k in range(start, start + self.frames)]
        return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
