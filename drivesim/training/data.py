"""Training data in a resumable global order: positions, shards per rank, skipped items.

The sampler walks global sample positions p = 0, 1, 2, ...; position p is item
`perm(seed, p // N)[p % N]` of an N-item dataset (a new permutation each pass). Global batch g holds
positions [g*B*W, (g+1)*B*W); rank r reads its contiguous slice [r*B, (r+1)*B) of each. The start
position comes from the restored step, so a resumed run reads exactly the items the uninterrupted
run would have, mid-epoch included, and the positions seed every random draw.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

from drivesim.data.clip import Clip
from drivesim.data.collate import ClipBatch, collate_clips

log = logging.getLogger(__name__)


class GlobalOrderSampler(Sampler[tuple[int, int]]):
    """Yields (position, item index) for one rank from `start_batch` to `end_batch` (global batches)."""

    def __init__(self, size: int, seed: int, batch_size: int, world_size: int = 1, rank: int = 0,
                 start_batch: int | Callable[[], int] = 0, end_batch: int = 0) -> None:
        if size < 1:
            raise ValueError("the training set is empty: no clips to train on (check data.root, frames, fps)")
        self.size, self.seed, self.batch_size = size, seed, batch_size
        self.world_size, self.rank = world_size, rank
        # The start is read when iteration begins (a callable: from the restored step), so an epoch
        # that Lightning restarts after a resume reads on from the right place.
        self._start = start_batch
        self.end_batch = end_batch
        self._perm_pass = -1
        self._perm: list[int] = []

    def _item(self, position: int) -> int:
        epoch = position // self.size
        if epoch != self._perm_pass:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = torch.randperm(self.size, generator=generator).tolist()
            self._perm_pass = epoch
        return self._perm[position % self.size]

    @property
    def start_batch(self) -> int:
        return int(self._start()) if callable(self._start) else int(self._start)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for g in range(self.start_batch, self.end_batch):
            base = g * self.batch_size * self.world_size + self.rank * self.batch_size
            for j in range(self.batch_size):
                yield base + j, self._item(base + j)

    def __len__(self) -> int:
        return max(0, self.end_batch - self.start_batch) * self.batch_size


class PositionedDataset(Dataset):
    """Wraps a dataset so items come back with their global position."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> tuple[int, Any]:
        position, index = key
        return position, self.dataset[index]


@dataclass
class TrainBatch:
    """A collated batch: global positions (B,), the clips, and cached latents (B, T, C, h, w) if any."""

    positions: torch.Tensor
    clips: ClipBatch
    latents: torch.Tensor | None

    def __len__(self) -> int:
        return int(self.positions.numel())


def collate_positioned(items: list[tuple[int, Any]]) -> TrainBatch:
    """Items are (position, Clip | None) or (position, (Clip, latents) | None); None = skipped."""
    kept = [(p, it) for p, it in items if it is not None]
    skipped = len(items) - len(kept)
    clips: list[Clip | None] = []
    latents: list[torch.Tensor] = []
    for _, item in kept:
        if isinstance(item, tuple):
            clips.append(item[0])
            latents.append(item[1])
        else:
            clips.append(item)
    batch = collate_clips(clips)
    batch.skipped += skipped
    return TrainBatch(positions=torch.tensor([p for p, _ in kept], dtype=torch.long), clips=batch,
                      latents=torch.stack(latents) if latents else None)
