"""Generation at scale: many (scenario, seed) rollouts across devices through Lightning's `predict`.

`drivesim generate scenarios=DIR seeds=[...] trainer=<preset>` (or `scenario=replay replay_split=val`)
lists one item per scenario file (or dataset scene of the split) and seed, skips the finished ones
(a marker under `out/.predict/`), and shards the rest over the processes (item i to rank i mod N;
no padding, so no item runs twice). Each process holds the whole cascade; `predict_step` runs one
item exactly as `drivesim generate` runs one (`run_one`: the rollout, resumable chunk by chunk; the
dataset scene, format=nuscenes, appended under a file lock; the upsampled video), and
`RolloutWriter`, a prediction-writer callback, files its done marker (the paths it made).
Folders: `out/<scenario>-seed<N>/` (format=video) or `out/rollouts/<scenario>-seed<N>/`.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.utils.data import DataLoader

from drivesim.atomic import atomic_write_text
from drivesim.data.errors import DataError
from drivesim.exports import ExportError
from drivesim.pipelines.loading import GenerateError, resolve_precision
from drivesim.pipelines.nuscenes_export import scene_name
from drivesim.pipelines.run import EXIT_USAGE, cascade_from_config, prepare, run_one
from drivesim.pipelines.store import RunMismatchError
from drivesim.scenario.spec import ScenarioError, load_scenario

log = logging.getLogger(__name__)
DONE_DIR = ".predict"


@dataclass(frozen=True)
class PredictItem:
    name: str  # scene_name(scenario, seed): its folder and dataset scene
    seed: int
    scenario: dict[str, Any] = field(default_factory=dict)  # overrides of the `scenario` config node


def done_marker(out: str | Path, name: str) -> Path:
    return Path(out) / DONE_DIR / f"{name}.json"


def predict_items(cfg: DictConfig) -> list[PredictItem]:
    """Every (scenario, seed) item of `scenarios=` or `replay_split=`, in a fixed order; one-line errors."""
    seeds = [int(s) for s in cfg.seeds] if cfg.seeds else [int(cfg.seed)]
    if len(set(seeds)) != len(seeds):
        raise GenerateError(f"seeds={seeds}: repeated seed")
    sources: list[tuple[str, dict[str, Any]]] = []
    if cfg.scenarios:
        folder = Path(cfg.scenarios)
        files = sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]) if folder.is_dir() else []
        if not files:
            raise GenerateError(f"scenarios={cfg.scenarios}: no scenario files (*.yaml) in that folder")
        names = [load_scenario(f).name for f in files]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise GenerateError(f"scenarios={cfg.scenarios}: two files name the scenario {dupes[0]!r}")
        sources = [(n, {"path": str(f)}) for n, f in zip(names, files)]
    else:
        sources = [(f"replay:{scene}", {"replay": {"scene": scene}}) for scene in _split_scenes(cfg)]
    return [PredictItem(scene_name(n, seed), seed, over) for n, over in sources for seed in seeds]


def _split_scenes(cfg: DictConfig) -> list[str]:
    from drivesim.data.nuscenes_db import open_nuscenes
    from drivesim.data.splits import split_scenes
    from drivesim.pipelines.scene_clips import data_config

    replay = cfg.scenario.get("replay")
    if replay is None:
        raise GenerateError(f"replay_split={cfg.replay_split}: needs scenario=replay (its data and root)")
    if replay.data not in ("nuscenes", "synthetic"):
        raise GenerateError(f"replay_split: scenario.replay.data={replay.data}: nuscenes or synthetic only")
    data = data_config(str(replay.data), {"root": replay.root} if replay.root else {}, "scenario.replay")
    nusc = open_nuscenes(data.root, data.version)
    split = None if cfg.replay_split == "all" else str(cfg.replay_split)
    return split_scenes(data.version, [s["name"] for s in nusc.scene], split, data.seed, data.val_fraction)


def item_config(cfg: DictConfig, item: PredictItem) -> DictConfig:
    """The single-run `generate` config of an item (scale-out keys cleared: they do not change the video)."""
    one = cfg.copy()
    OmegaConf.set_struct(one, False)
    one.merge_with({"scenario": item.scenario, "seed": item.seed, "seeds": None, "scenarios": None,
                    "replay_split": None, "trainer": None,
                    "out": str(Path(cfg.out) / item.name) if cfg.format == "video" else str(cfg.out)})
    OmegaConf.set_struct(one, True)
    return one


def _trainer_device(cfg: DictConfig) -> str:
    """The kind of device the predict trainer runs on: "cuda" for a GPU accelerator, else "cpu"."""
    accelerator = str(cfg.trainer.accelerator) if cfg.trainer is not None else "cpu"
    gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    return "cuda" if gpu else "cpu"


class RolloutModule(L.LightningModule):
    """The cascade as a LightningModule (so Lightning places it on each process's device); one item per step."""

    def __init__(self, cfg: DictConfig, items: list[PredictItem]) -> None:
        super().__init__()
        self.cfg, self.items = cfg, items
        # Lightning moves the models to the process's device: `precision=auto` is decided for that device.
        self.cascade = cascade_from_config(cfg, device="cpu",
                                           precision=resolve_precision(str(cfg.precision), _trainer_device(cfg)))
        engine = self.cascade.engine
        engine.validate()
        stages = {"prediction": engine.prediction, "image": engine.image, "interpolation": engine.interpolation}
        self.unets = nn.ModuleDict({k: s.unet for k, s in stages.items() if s is not None})
        if self.cascade.upsampler is not None:
            self.unets["upsampler"] = self.cascade.upsampler.unet
        self.vae = engine.vae
        self.text = self.cascade.text_encoder

    def on_predict_start(self) -> None:
        self.cascade.engine.device = str(self.device)
        if self.cascade.upsampler is not None:
            self.cascade.upsampler.device = str(self.device)

    def predict_dataloader(self) -> DataLoader:
        shard = self.items[self.global_rank::self.trainer.world_size]
        log.info("rank %d: %d of %d items", self.global_rank, len(shard), len(self.items))
        return DataLoader(shard, batch_size=None, collate_fn=_identity)  # type: ignore[arg-type]

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        return batch  # an item description: the rollout places its own tensors

    def predict_step(self, item: PredictItem, batch_idx: int) -> dict[str, Any]:
        """One item, exactly as `drivesim generate` runs it (rollout, dataset scene, upsampling)."""
        cfg = item_config(self.cfg, item)
        job = prepare(cfg, self.cascade)
        seed, folder, settings = job.runs[0]
        start = time.perf_counter()
        paths = run_one(job, cfg, seed, folder, settings)
        return {"item": item, "folder": folder, "paths": paths, "seconds": time.perf_counter() - start}


def _identity(x: Any) -> Any:
    return x


class RolloutWriter(BasePredictionWriter):
    """Files each finished rollout: the dataset scene (format=nuscenes), then its done marker."""

    def __init__(self, cfg: DictConfig) -> None:
        super().__init__(write_interval="batch")
        self.cfg = cfg

    def write_on_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, prediction: Any,
                           batch_indices: Any, batch: Any, batch_idx: int, dataloader_idx: int) -> None:
        item: PredictItem = prediction["item"]
        record = {"name": item.name, "seed": item.seed, "folder": str(prediction["folder"]),
                  "outputs": prediction["paths"], "wall_seconds": round(prediction["seconds"], 3),
                  "rank": trainer.global_rank}
        atomic_write_text(done_marker(self.cfg.out, item.name), json.dumps(record, indent=2) + "\n")
        log.info("done %s (rank %d, %.1f s)", item.name, trainer.global_rank, prediction["seconds"])


def run_predict(cfg: DictConfig) -> int:
    try:
        if cfg.format not in ("video", "nuscenes"):
            raise GenerateError(f"format={cfg.format}: video or nuscenes")
        items = predict_items(cfg)
        pending = [i for i in items if not done_marker(cfg.out, i.name).is_file()]
        if pending:  # check the first item completely (scenario, camera, resume settings) before anything runs
            module = RolloutModule(cfg, pending)
            prepare(item_config(cfg, pending[0]), module.cascade)
    except (GenerateError, ScenarioError, ExportError, RunMismatchError, DataError) as exc:
        sys.stderr.write(f"drivesim generate: {' '.join(str(exc).split())}\n")
        return EXIT_USAGE
    log.info("%d items, %d finished, %d to run", len(items), len(items) - len(pending), len(pending))
    if not pending:
        return 0
    t = cfg.trainer if cfg.trainer is not None else OmegaConf.create({"accelerator": "cpu", "devices": 1})
    if t.get("threads"):
        torch.set_num_threads(int(t.threads))
    trainer = L.Trainer(accelerator=str(t.accelerator), devices=t.devices, num_nodes=int(t.get("num_nodes", 1)),
                        strategy=str(t.get("strategy", "auto")), logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, use_distributed_sampler=False,
                        callbacks=[RolloutWriter(cfg)])
    trainer.predict(module, return_predictions=False)
    if trainer.global_rank == 0:
        for item in items:
            sys.stdout.write(f"{done_marker(cfg.out, item.name)}\n")
    return 0
