"""What every stage's LightningModule shares: optimiser with warm-up, EMA, bad-number stops,
empty-batch handling and the per-sample random generators.

The modules own the objective only; loops, devices, strategies and checkpoints are Lightning's.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import lightning as L
import torch
from diffusers.training_utils import EMAModel
from torch import Tensor, nn

from drivesim.training.data import TrainBatch
from drivesim.training.randomness import sample_generators

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """A NaN/Inf loss: the run stops, the last good checkpoint stays, nothing is exported."""


class EmptyDataError(RuntimeError):
    """Every item the loaders offered was skipped: there is nothing to train on."""


class StageModule(L.LightningModule):
    """Base of the stage modules: subclasses give `trainable()` and `losses(batch, generators)`."""

    def __init__(self, trainer_cfg: Any, seed: int) -> None:
        super().__init__()
        self.trainer_cfg = trainer_cfg
        self.seed = int(seed)
        self.ema: EMAModel | None = None
        self.dataset_size = 0  # set by the runner: a run whose every item is skipped stops
        self._good_items = 0
        self._skipped_items = 0

    # ------------------------------------------------------------------ to implement
    def trainable(self) -> list[nn.Parameter]:
        raise NotImplementedError

    def losses(self, batch: TrainBatch, generators: list[torch.Generator]) -> dict[str, Tensor]:
        """Named loss terms; "loss" is the total that is optimised."""
        raise NotImplementedError

    # ------------------------------------------------------------------ EMA
    def setup_ema(self) -> None:
        if self.trainer_cfg.ema and self.ema is None:
            # decay = min(ema_decay, (1 + step) / (10 + step)): a short CPU run still exports trained weights.
            self.ema = EMAModel(self.trainable(), decay=float(self.trainer_cfg.ema_decay), use_ema_warmup=False)

    def on_fit_start(self) -> None:
        if self.ema is not None:
            self.ema.to(self.device)

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        # The EMA follows each optimiser step at once, before any callback (the checkpoint) sees the step.
        super().optimizer_step(*args, **kwargs)
        if self.ema is not None:
            self.ema.step(self.trainable())

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.ema is not None:
            checkpoint["ema"] = self.ema.state_dict()
        checkpoint["drivesim_items"] = {"good": self._good_items, "skipped": self._skipped_items}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.ema is not None and "ema" in checkpoint:
            self.ema.load_state_dict(checkpoint["ema"])
        items = checkpoint.get("drivesim_items") or {}
        self._good_items, self._skipped_items = int(items.get("good", 0)), int(items.get("skipped", 0))

    def ema_weights(self) -> Any:
        """Context manager: the trainable parameters hold their EMA values inside it."""
        module = self

        class _Swap:
            def __enter__(self) -> None:
                if module.ema is not None:
                    module.ema.store(module.trainable())
                    module.ema.copy_to(module.trainable())

            def __exit__(self, *exc: Any) -> None:
                if module.ema is not None:
                    module.ema.restore(module.trainable())

        return _Swap()

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> Any:
        params = self.trainable()
        if not params:
            raise ValueError("this stage has no trainable parameters (check stage.train_groups)")
        return self.adamw_with_warmup([{"params": params}])

    def adamw_with_warmup(self, groups: list[dict[str, Any]]) -> dict[str, Any]:
        """AdamW over parameter groups with the trainer config's linear LR warm-up (per step)."""
        cfg = self.trainer_cfg
        optimizer = torch.optim.AdamW(groups, lr=float(cfg.lr), weight_decay=float(cfg.weight_decay))
        warmup = max(0, int(cfg.warmup_steps))

        def factor(step: int) -> float:
            return min(1.0, (step + 1) / warmup) if warmup else 1.0

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ------------------------------------------------------------------ the step
    def generators(self, batch: TrainBatch, stream: str = "") -> list[torch.Generator]:
        return sample_generators(self.seed, batch.positions, stream)

    @property
    def items_trained(self) -> int:
        """Items that reached the objective (skipped ones excluded), over the run and its resumptions."""
        return self._good_items

    def _any_rank(self, flag: bool, all_ranks: bool = False) -> bool:
        """A decision every rank takes together (one collective), so no rank stops while another waits
        in an all-reduce; `all_ranks`: true only where it is true on every rank."""
        trainer = getattr(self, "_trainer", None)  # None outside a Trainer (tests, benchmarks)
        if trainer is not None and trainer.world_size > 1:
            return bool(trainer.strategy.reduce_boolean_decision(flag, all=all_ranks))
        return flag

    def _count(self, batch: TrainBatch) -> None:
        self._good_items += len(batch)
        self._skipped_items += int(batch.clips.skipped)
        nothing = self._good_items == 0 and bool(self.dataset_size) and self._skipped_items >= self.dataset_size
        if self._any_rank(nothing, all_ranks=True):
            raise EmptyDataError(f"every one of the {self._skipped_items} items read so far was skipped "
                                 "(on_error=skip): nothing to train on; check the data")

    def training_step(self, batch: TrainBatch, batch_idx: int) -> Tensor | None:
        self._count(batch)
        ddp = self.trainer.world_size > 1
        if len(batch) == 0:
            log.warning("step %d: every item of this batch was skipped", self.global_step)
            if not ddp:
                return None
            # Other ranks wait in the gradient all-reduce: join with an exactly-zero loss, and take part
            # in the same collectives (the bad-number decision, the logged loss) as they do.
            zero: Tensor = torch.stack([(p * 0.0).sum() for p in self.trainable()]).sum()
            terms = {"loss": zero}
        else:
            terms = self.losses(batch, self.generators(batch))
        bad = [(name, value) for name, value in terms.items() if not torch.isfinite(value).all()]
        if self._any_rank(bool(bad)):
            what = (f"term {bad[0][0]!r} = {float(bad[0][1].detach().float().mean())}" if bad
                    else "on another rank")
            raise NonFiniteLossError(f"non-finite loss at step {self.global_step}: {what}")
        batch_size = max(1, len(batch))
        for name, value in terms.items():
            if name != "loss" and len(batch) == 0:
                continue
            # The total is averaged over ranks (a DDP run logs the curve one process would).
            self.log(f"train/{name}", value.detach(), prog_bar=name == "loss", batch_size=batch_size,
                     sync_dist=name == "loss" and ddp)
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=batch_size)
        return terms["loss"]

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        # A finite loss can still carry a NaN/Inf gradient: stop before it reaches the weights (and a
        # checkpoint or an export).
        bad = any(p.grad is not None and not torch.isfinite(p.grad).all() for p in self.trainable())
        if self._any_rank(bad):
            raise NonFiniteLossError(f"non-finite gradient at step {self.global_step}: term 'loss'")

    def weights_finite(self) -> bool:
        """The trained weights and their EMA are all finite (checked before every export)."""
        with self.ema_weights():
            ema_ok = all(bool(torch.isfinite(p).all()) for p in self.trainable())
        return ema_ok and all(bool(torch.isfinite(p).all()) for p in self.trainable())


def finite_or_nan(value: float) -> float:
    return value if math.isfinite(value) else float("nan")
