"""The Lightning DataModule over the `data=` configs: train/val loaders, workers, seeded sampling,
and the skipped-item report.

Items a dataset skips under on_error="skip" come back as None; the collate drops and counts them
inside the worker, and `on_after_batch_transfer` (main process) adds the counts up, so the report
at the end of an epoch is exact however many workers there are.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from drivesim.data.collate import ClipBatch, collate_clips
from drivesim.data.factory import build_dataset, get_option

log = logging.getLogger(__name__)


def worker_init(worker_id: int) -> None:
    """numpy's generator seeded from the worker's torch seed, for reproducibility. (Thread pools are
    not touched here: resizing them in a forked child can deadlock; torch already uses one thread.)"""
    np.random.seed(torch.initial_seed() % 2**32)


class SeededSampler(Sampler[int]):
    """A permutation drawn from (seed, epoch): the same order on every run, a new one each epoch,
    and a resumed run gets the epoch's order back (Lightning calls set_epoch)."""

    def __init__(self, size: int, seed: int, shuffle: bool = True) -> None:
        self.size, self.seed, self.shuffle, self.epoch = size, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.size))
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())

    def __len__(self) -> int:
        return self.size


class ClipDataModule(L.LightningDataModule):
    """Train/val clip loaders for one `data` config node."""

    def __init__(self, cfg: Any) -> None:
        super().__init__()
        self.cfg = cfg
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.skipped: dict[str, int] = {"train": 0, "val": 0}
        self.reports: list[dict[str, Any]] = []

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self.train_set = build_dataset(self.cfg, split=get_option(self.cfg, "train_split", "train"))
            self.val_set = build_dataset(self.cfg, split=get_option(self.cfg, "val_split", "val"))
            for name, ds in (("train", self.train_set), ("val", self.val_set)):
                left_out = len(getattr(ds, "skipped", []))
                if left_out:
                    log.warning("data: %d %s file(s) left out at index time (on_error=skip)", left_out, name)

    def _loader(self, ds: Dataset | None, shuffle: bool) -> DataLoader:
        if ds is None:
            raise RuntimeError("call setup() before asking for a loader")
        workers = int(get_option(self.cfg, "num_workers", 0))
        return DataLoader(
            ds,
            batch_size=int(get_option(self.cfg, "batch_size", 2)),
            sampler=SeededSampler(len(ds), int(get_option(self.cfg, "seed", 0)), shuffle=shuffle),  # type: ignore[arg-type]
            num_workers=workers,
            collate_fn=collate_clips,
            worker_init_fn=worker_init if workers else None,
            persistent_workers=False,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if isinstance(batch, ClipBatch) and batch.skipped:
            phase = "train" if self.trainer is None or self.trainer.training else "val"
            self.skipped[phase] += batch.skipped
        return batch

    def count(self, batch: ClipBatch, phase: str = "train") -> None:
        """Count a batch's skips when iterating the loaders without a Trainer."""
        self.skipped[phase] += batch.skipped

    def end_epoch(self, phase: str = "train") -> int:
        """Log and reset the phase's skip count; returns it (the Callback below calls this).

        The log line also repeats how many files the phase's dataset left out at index time."""
        key = "val" if phase == "sanity" else phase
        count = self.skipped.get(key, 0)
        dataset = self.train_set if key == "train" else self.val_set
        left_out = len(getattr(dataset, "skipped", []))
        self.reports.append({"phase": phase, "skipped": count, "left_out_at_index": left_out})
        if count or left_out:
            log.warning("data: %d %s item(s) skipped this epoch, %d file(s) left out at index time (on_error=skip)",
                        count, phase, left_out)
        else:
            log.info("data: no %s items skipped this epoch", phase)
        self.skipped[key] = 0
        return count


class SkipReport(L.Callback):
    """Reports the DataModule's skipped items at the end of every train and validation epoch."""

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        dm = trainer.datamodule  # type: ignore[attr-defined]
        if isinstance(dm, ClipDataModule):
            dm.end_epoch("train")

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        dm = trainer.datamodule  # type: ignore[attr-defined]
        if isinstance(dm, ClipDataModule):
            dm.end_epoch("sanity" if trainer.sanity_checking else "val")
