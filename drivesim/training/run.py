"""`drivesim train`: resolve the config, build data and module, fit with Lightning, export.

Same command again: resumes from `out/checkpoints/last.ckpt` exactly (sampler position and every
random draw follow the global step), or re-exports when the run is complete. An `out=` holding a run
of another config exits 2 naming the differing keys, unless `resume=false`.
"""

from __future__ import annotations

import logging
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from omegaconf import DictConfig, OmegaConf

from drivesim.atomic import atomic_path, atomic_write_text
from drivesim.config.diff import differing_keys
from drivesim.exports import ExportError
from drivesim.training.base import EmptyDataError, NonFiniteLossError
from drivesim.training.build import build_module, build_train_data
from drivesim.training.export_writer import write_export
from drivesim.training.resolve import Resolved, TrainConfigError, resolve

log = logging.getLogger(__name__)
# Our sampler reads on from the restored step (training/data.py), so a mid-epoch resume is exact, and
# the frozen autoencoder / text model are in eval mode on purpose: Lightning's generic warnings about
# both would mislead.
warnings.filterwarnings("ignore", message=".*dataloader is not resumable.*")
warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")
RUN_CONFIG = "run_config.yaml"
# Callbacks an embedding application (or a test) adds to every run of this process.
EXTRA_CALLBACKS: list[Any] = []
# Keys that may change between a run and its resumption without making it another run.
_MAY_CHANGE = ("resume", "trainer.max_steps", "trainer.threads", "trainer.checkpoint_every_n_steps",
               "trainer.val_every_n_steps", "data.num_workers", "trainer.log_every_n_steps")


def config_differences(old: DictConfig, new: DictConfig) -> list[str]:
    return differing_keys(OmegaConf.to_container(old, resolve=True),  # type: ignore[arg-type]
                          OmegaConf.to_container(new, resolve=True), ignore=_MAY_CHANGE)  # type: ignore[arg-type]


def _prepare_out(out: Path, cfg: DictConfig) -> None:
    saved = out / RUN_CONFIG
    if saved.is_file():
        if not bool(cfg.resume):
            # The old export stays until the new one replaces it (export_writer renames it in at the end):
            # a new run that fails or is killed never leaves the folder without a good export.
            log.info("resume=false: starting %s afresh (its export stays until the new one is written)", out)
            for name in ("checkpoints", "logs", RUN_CONFIG):
                target = out / name
                shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
        else:
            diff = config_differences(OmegaConf.load(saved), cfg)  # type: ignore[arg-type]
            if diff:
                shown = ", ".join(diff[:8]) + (" ..." if len(diff) > 8 else "")
                raise TrainConfigError(f"out={out} holds a run with a different config ({shown}); use another "
                                       "out= or resume=false to start over")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(saved, OmegaConf.to_yaml(cfg))


def _loggers(out: Path) -> list[Any]:
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    loggers: list[Any] = [CSVLogger(str(out / "logs"), name="csv", version="")]
    try:
        import tensorboard  # noqa: F401

        loggers.append(TensorBoardLogger(str(out / "logs"), name="tensorboard", version=""))
    except ImportError:
        pass
    return loggers


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temp file and renamed: a kill mid-write keeps the last good one."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        with atomic_path(Path(path)) as tmp:
            torch.save(checkpoint, tmp)


def check_strategy(t: DictConfig) -> None:
    """Refuse Lightning's FSDP (and DeepSpeed, which shards too) strategies before anything is built or written.

    Sharded training breaks three things drivesim relies on (measured on a 2-rank CPU run forced past
    Lightning's GPU check, session 17): norm gradient clipping is refused by FSDPPrecision at step 1,
    the EMA's full-shape shadows meet 1-D flat shards at step 1, and rank 0 would export its own
    shards. Until the export gathers full state dicts, FSDP is a one-line error, not a crash.
    """
    strategy = str(t.strategy)
    if strategy.startswith(("fsdp", "deepspeed")):  # every registration of both shards parameters
        raise TrainConfigError(f"trainer.strategy={strategy} is not supported (sharded parameters break the EMA, "
                               "gradient clipping and the export): use trainer=gpu, or trainer=ddp with "
                               "trainer.precision=bf16-mixed trainer.gradient_checkpointing=true")


def make_trainer(cfg: DictConfig, out: Path, callbacks: list[Any]) -> L.Trainer:
    from lightning.pytorch.callbacks import ModelCheckpoint

    t = cfg.trainer
    checkpoint = ModelCheckpoint(dirpath=str(out / "checkpoints"), save_last=True, save_top_k=0,
                                 every_n_train_steps=max(1, int(t.checkpoint_every_n_steps)), save_on_exception=False)
    val_every = int(t.val_every_n_steps)
    return L.Trainer(
        accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes, strategy=t.strategy,
        precision=t.precision, max_steps=int(t.max_steps), max_epochs=-1,
        log_every_n_steps=int(t.log_every_n_steps), gradient_clip_val=t.gradient_clip_val,
        accumulate_grad_batches=int(t.accumulate_grad_batches), deterministic=bool(t.deterministic),
        callbacks=[checkpoint, *callbacks, *EXTRA_CALLBACKS], logger=_loggers(out), default_root_dir=str(out),
        plugins=[AtomicCheckpointIO()],
        use_distributed_sampler=False, num_sanity_val_steps=0,
        val_check_interval=val_every if val_every > 0 else None, check_val_every_n_epoch=None,
        limit_val_batches=int(t.val_batches) if val_every > 0 else 0,
        enable_model_summary=False, benchmark=False)


def run_training(cfg: DictConfig) -> int:
    """Train one stage; returns the exit code (0 done, 1 stopped by bad numbers or data)."""
    started = time.perf_counter()
    check_strategy(cfg.trainer)
    resolved: Resolved = resolve(cfg)
    cfg = resolved.cfg
    out = Path(str(cfg.out))
    if cfg.trainer.threads:
        torch.set_num_threads(int(cfg.trainer.threads))
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    try:  # parents load (and a wrong architecture is refused) before anything is written
        module: Any = build_module(resolved)
    except ExportError as exc:
        raise TrainConfigError(str(exc)) from exc
    _prepare_out(out, cfg)
    data = build_train_data(resolved, out)
    module.dataset_size = len(data.train_set)  # type: ignore[arg-type,assignment]
    from drivesim.training.callbacks import SampleVideos, TrainingClock

    clock = TrainingClock()
    trainer = make_trainer(cfg, out, [SampleVideos(out / "logs" / "samples", fps=float(cfg.data.fps)), clock])
    last = out / "checkpoints" / "last.ckpt"
    ckpt = str(last) if last.is_file() else None
    done = 0
    if ckpt:
        log.info("resuming from %s", ckpt)
        state = _read_checkpoint(last)
        done = int(state.get("global_step", 0))
        # Lightning restores the clock's total, or nothing from a checkpoint made before the clock existed.
        clock.load_state_dict(dict(state.get("callbacks", {}).get(clock.state_key, {})))
    try:
        if done < int(cfg.trainer.max_steps):
            trainer.fit(module, datamodule=data, ckpt_path=ckpt)
        else:
            log.info("run already complete (%d steps): re-exporting", int(cfg.trainer.max_steps))
            _restore_weights(module, last)
    except (NonFiniteLossError, EmptyDataError) as exc:
        log.error("%s; the last good checkpoint stays at %s; nothing exported", exc, last)
        return 1
    if not trainer.is_global_zero:
        return 0
    if ckpt is None and module.items_trained == 0:
        log.error("every item read in this run was skipped (on_error=skip): nothing was trained; not exported")
        return 1
    steps = max(trainer.global_step, _checkpoint_step(last) if last.is_file() else 0)
    if steps < int(cfg.trainer.max_steps):
        log.error("training stopped at step %d of %d: not exported", steps, int(cfg.trainer.max_steps))
        return 1
    if not module.weights_finite():
        log.error("the trained weights hold NaN/Inf values: not exported")
        return 1
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v) and v.numel() == 1}
    summary = {"stage": resolved.stage, "seed": int(cfg.seed), "steps": steps, "final_metrics": metrics,
               "data": data.identity(), "wall_time_s": round(time.perf_counter() - started, 2),
               "train_seconds_all_runs": clock.reported(),
               "threads": torch.get_num_threads()}
    if resolved.stage == "autoencoder" and resolved.autoencoder_path is not None:
        summary["initialised_from"] = str(resolved.autoencoder_path)
    parents: dict[str, Path] = {}
    if resolved.autoencoder_parent is not None:
        parents["autoencoder"] = resolved.autoencoder_parent
    parent = resolved.image_parent
    if parent is not None and parent.stage == resolved.stage:
        # Fine-tuned from an export of this stage: keep its lineage (the cascade's shared image export).
        summary["initialised_from"] = str(parent.path)
        for role in parent.parents:
            if role != "autoencoder":
                path = parent.parent_path(role)
                assert path is not None
                parents[role] = path
    elif parent is not None:
        parents[parent.stage] = parent.path  # "image" for temporal stages
    write_export(out / "export", stage=resolved.stage, cfg=cfg, module=module, data_info=data.export_info(),
                 parents=parents, summary=summary)
    log.info("train: done, export at %s", out / "export")
    return 0


def _read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint's entries, its tensors memory-mapped (read where used, not here)."""
    return dict(torch.load(path, map_location="cpu", weights_only=True, mmap=True))


def _checkpoint_step(path: Path) -> int:
    return int(_read_checkpoint(path).get("global_step", 0))


def _restore_weights(module: Any, path: Path) -> None:
    state = torch.load(path, map_location="cpu", weights_only=True)
    module.load_state_dict(state["state_dict"])
    module.on_load_checkpoint(state)
