"""Shared helpers of the training tests: a small synthetic world and `drivesim train` runs on micro."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from drivesim.cli import main

REPO = Path(__file__).resolve().parents[1]


def render_world(root: Path, scenes: int = 3, seconds: float = 6.0, seed: int = 1) -> Path:
    assert main(["synth", f"out={root}", f"scenes={scenes}", f"seconds={seconds}", f"seed={seed}",
                 "camera.width=128", "camera.height=64"]) == 0
    return root


def train_args(stage: str, world: Path, out: Path, cache: Path, steps: int = 4, *extra: str) -> list[str]:
    return ["train", f"stage={stage}", "model=micro", "data=synthetic", f"data.root={world}", f"out={out}",
            f"trainer.max_steps={steps}", "trainer.threads=1", "trainer.log_every_n_steps=1", f"cache_dir={cache}",
            *extra]


def run_cli(args: list[str], env: dict[str, str] | None = None, script: str | None = None) -> subprocess.CompletedProcess:
    """`drivesim ARGS` in a fresh process (optionally through a wrapper script)."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    # The console script (not `python -c`): Lightning's DDP launcher re-runs sys.argv for each rank.
    entry = Path(sys.executable).parent / "drivesim"
    command = [sys.executable, "-c", script, *args] if script else [str(entry), *args]
    return subprocess.run(command, capture_output=True, text=True, env=full_env, cwd=REPO, timeout=600)
