"""The DataModule over the Hydra `data=` configs: 2 workers, seeded order, skips counted across
worker processes and reported at the end of the epoch (also inside a Lightning Trainer)."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from data_fixtures import write_nuscenes, write_video

from drivesim.config import compose_command
from drivesim.data import ClipBatch, ClipDataModule, DataError, SkipReport, build_dataset


def _videos(root: Path, n: int = 6) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        write_video(root / f"v{i}.mp4", "h264", frames=30, fps=10.0, size=(24, 32))
    (root / "empty.mp4").write_bytes(b"")
    return root


def _cfg(root: Path, *extra: str):
    overrides = ["data=videos", f"data.root={root}", "data.num_workers=2", "data.batch_size=2", "data.frames=3",
                 "data.fps=2.0", "data.size=[16,24]", "data.val_fraction=0.34", *extra]
    return compose_command("train", overrides).data


def _order(dm: ClipDataModule) -> list[tuple[str, float]]:
    out = []
    for batch in dm.train_dataloader():
        dm.count(batch)
        out += [(s.scene, float(s.timestamps[0])) for s in batch.sources]
    return out


def test_two_workers_seeded_order_and_skip_count(tmp_path: Path) -> None:
    root = _videos(tmp_path / "v")
    cfg = _cfg(root, "data.on_error=skip", "data.seed=7")
    dm = ClipDataModule(cfg)
    dm.setup("fit")
    assert len(dm.train_set.skipped) + len(dm.val_set.skipped) == 1  # the empty file, at index time
    dm2 = ClipDataModule(_cfg(root, "data.on_error=skip", "data.seed=7"))
    dm2.setup("fit")
    # Break one indexed file after indexing: its clips fail inside the workers.
    victim = sorted({v.path for v in dm.train_set.videos})[0]
    per_file = sum(1 for vid, _ in dm.train_set.items if dm.train_set.videos[vid].path == victim)
    (root / victim).write_bytes(b"\0" * 100)
    first = _order(dm)
    assert dm.end_epoch("train") == per_file
    assert len(first) == len(dm.train_set) - per_file
    assert _order(dm2) == first  # same seed, same order, across worker processes
    loader = dm2.train_dataloader()
    loader.sampler.set_epoch(1)
    assert [(s.scene, float(s.timestamps[0])) for b in loader for s in b.sources] != first


def test_raise_policy_fails_with_the_file_name(tmp_path: Path) -> None:
    root = _videos(tmp_path / "v", n=3)
    with pytest.raises(DataError, match="empty.mp4: empty file"):
        ClipDataModule(_cfg(root)).setup("fit")


class _Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(3, 1)
        self.seen = 0

    def training_step(self, batch: ClipBatch, batch_idx: int):
        if len(batch) == 0:
            return None
        self.seen += len(batch)
        x = batch.frames.float().mean(dim=(1, 3, 4)) / 255
        return self.layer(x).pow(2).mean()

    def validation_step(self, batch: ClipBatch, batch_idx: int) -> None:
        pass

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_trainer_reports_skips_at_epoch_end(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = write_nuscenes(tmp_path / "nus", "v1.0-synth", scenes=3)
    cfg = compose_command("train", ["data=synthetic", f"data.root={root}", "data.num_workers=2", "data.on_error=skip",
                                    "data.fps=6.0", "data.frames=3", "data.size=[64,128]",
                                    "data.val_fraction=0.34"]).data
    dm = ClipDataModule(cfg)
    dm.setup("fit")
    scene = dm.train_set.streams[0].scene_name
    frame = dm.train_set.items[0][1][1]
    assert frame % 6  # a sweep
    (root / "sweeps" / "CAM_FRONT" / f"s{int(scene[-4:])}_{frame:04d}.jpg").unlink()  # found in a worker
    broken = sum(1 for k, picks in dm.train_set.items if k == 0 and frame in picks)
    assert broken > 0
    model = _Tiny()
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[SkipReport()],
                        num_sanity_val_steps=0, default_root_dir=tmp_path)
    with caplog.at_level(logging.INFO, logger="drivesim.data.datamodule"):
        trainer.fit(model, datamodule=dm)
    train_reports = [r for r in dm.reports if r["phase"] == "train"]
    assert train_reports == [{"phase": "train", "skipped": broken, "left_out_at_index": 0}]
    assert model.seen == len(dm.train_set) - broken
    assert any("train" in rec.message for rec in caplog.records)


def test_unsized_data_config_is_a_clear_error(tmp_path: Path) -> None:
    nus = write_nuscenes(tmp_path / "nus", "v1.0-synth", scenes=1)
    with pytest.raises(ValueError, match="data.frames is not set"):
        build_dataset(compose_command("train", ["data=synthetic", f"data.root={nus}"]).data)


def test_every_data_config_builds(tmp_path: Path) -> None:
    nus = write_nuscenes(tmp_path / "nus", "v1.0-trainval", scenes=2, names=("scene-0001", "scene-0003"))
    vids = _videos(tmp_path / "v", n=2)
    (vids / "empty.mp4").unlink()
    sized = ["data.frames=4", "data.size=[64,128]"]
    for overrides in (["data=nuscenes", f"data.root={nus}"], ["data=videos", f"data.root={vids}"],
                      ["data=synthetic", f"data.root={nus}", "data.version=v1.0-trainval"]):
        data = compose_command("train", [*overrides, *sized]).data
        ds = build_dataset(data, split=None)
        clip = ds[0]
        assert tuple(clip.frames.shape) == (data.frames, 3, *data.size)
    val = build_dataset(compose_command("train", ["data=nuscenes", f"data.root={nus}", *sized]).data, split="val")
    assert {s.scene_name for s in val.streams} == {"scene-0003"}  # the official val split
    assert np.isfinite(val[0].ego.speed).all()


def test_worker_errors_reach_the_main_process_as_one_line(tmp_path: Path) -> None:
    root = _videos(tmp_path / "v", n=2)
    (root / "empty.mp4").unlink()
    dm = ClipDataModule(_cfg(root, "data.val_fraction=0.0"))
    dm.setup("fit")
    (root / "v0.mp4").write_bytes(b"\0" * 64)
    (root / "v1.mp4").write_bytes(b"\0" * 64)
    with pytest.raises(DataError) as info:
        for _ in dm.train_dataloader():
            pass
    assert "\n" not in str(info.value) and str(info.value).startswith(str(root / "v"))
    assert "cannot open as a video" in str(info.value)


def test_a_single_scene_trains_with_an_empty_val_split(tmp_path: Path) -> None:
    root = write_nuscenes(tmp_path / "nus", "v1.0-synth", scenes=1)
    dm = ClipDataModule(compose_command("train", ["data=synthetic", f"data.root={root}", "data.frames=4",
                                                  "data.size=[64,128]"]).data)
    dm.setup("fit")
    assert len(dm.train_set) > 0 and len(dm.val_set) == 0
    assert sum(len(b) for b in dm.train_dataloader()) == len(dm.train_set) and list(dm.val_dataloader()) == []
