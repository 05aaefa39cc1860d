"""Exact resume after a real SIGKILL mid-epoch, and 2-process DDP against one process with the
doubled batch: both rest on the global sample order and per-sample random draws."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_fixtures import render_world, run_cli, train_args

from drivesim.cli import main

KILL_SCRIPT = """
import os, signal, sys
import lightning as L
from drivesim.training import run

class KillAt(L.Callback):
    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == int(os.environ["KILL_AT_STEP"]):
            os.kill(os.getpid(), signal.SIGKILL)

run.EXTRA_CALLBACKS.append(KillAt())
from drivesim.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def parents(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("reliability")
    world = render_world(base / "world", scenes=2, seconds=6.0)
    cache = base / "cache"
    assert main(train_args("autoencoder", world, base / "ae", cache, 2)) == 0
    assert main(train_args("image", world, base / "img", cache, 2, f"model.vae={base / 'ae' / 'export'}")) == 0
    return {"world": world, "cache": cache, "img": base / "img" / "export"}


def _weights(export: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for group in ("spatial", "condition", "temporal"):
        out.update(load_file(str(export / f"{group}.safetensors")))
    return out


def test_sigkill_mid_epoch_then_rerun_equals_uninterrupted(parents: dict[str, Path], tmp_path: Path) -> None:
    common = [f"model.pretrained={parents['img']}", "trainer.deterministic=true", "trainer.checkpoint_every_n_steps=3",
              "data.batch_size=2"]
    straight = train_args("temporal", parents["world"], tmp_path / "straight", parents["cache"], 8, *common)
    killed = train_args("temporal", parents["world"], tmp_path / "killed", parents["cache"], 8, *common)
    assert run_cli(straight).returncode == 0
    first = run_cli(killed, env={"KILL_AT_STEP": "5"}, script=KILL_SCRIPT)
    assert first.returncode == -9, first.stderr[-2000:]
    ckpt = torch.load(tmp_path / "killed" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 3  # killed mid-epoch, two steps after the last checkpoint
    assert not (tmp_path / "killed" / "export").exists()
    second = run_cli(killed)
    assert second.returncode == 0, second.stderr[-2000:]
    a, b = _weights(tmp_path / "straight" / "export"), _weights(tmp_path / "killed" / "export")
    assert set(a) == set(b)
    assert max(float((a[k] - b[k]).abs().max()) for k in a) == 0.0
    # the export's cost counts both invocations' training (up to the killed one's checkpoint)
    killed_before = float(ckpt["callbacks"]["TrainingClock"]["train_seconds"])
    summary = json.loads((tmp_path / "killed" / "export" / "summary.json").read_text())
    assert 0 < killed_before < summary["train_seconds_all_runs"]
    assert summary["train_seconds_all_runs"] - killed_before < summary["wall_time_s"]


def _losses(run: Path) -> list[float]:
    with (run / "logs" / "csv" / "metrics.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("train/loss")]
    return [float(r["train/loss"]) for r in sorted(rows, key=lambda r: int(r["step"]))]


def test_ddp_two_processes_match_one_process_with_doubled_batch(parents: dict[str, Path], tmp_path: Path) -> None:
    common = [f"model.pretrained={parents['img']}", "trainer.deterministic=true", "trainer.ema=false"]
    one = train_args("temporal", parents["world"], tmp_path / "one", parents["cache"], 4, *common,
                     "data.batch_size=4")
    two = train_args("temporal", parents["world"], tmp_path / "two", parents["cache"], 4, *common,
                     "data.batch_size=2", "trainer=ddp", "trainer.accelerator=cpu")
    assert run_cli(one).returncode == 0
    result = run_cli(two)
    assert result.returncode == 0, result.stderr[-3000:]
    single, ddp = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(single) == len(ddp) == 4
    assert single == pytest.approx(ddp, rel=1e-4, abs=1e-6)
    a, b = _weights(tmp_path / "one" / "export"), _weights(tmp_path / "two" / "export")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-4
