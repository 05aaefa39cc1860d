"""What made a run: git commit, package versions, machine, torch threads (for run.json).

The thread count belongs here: CPU results differ across thread counts (a UNet forward by ~1e-6, which an
autoregressive rollout grows into visibly different frames), so a run is reproduced with the same count.
"""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

PACKAGES = ("drivesim", "torch", "diffusers", "numpy", "av")


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def provenance() -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"git_commit": git_commit(), "versions": versions, "python": platform.python_version(),
            "machine": platform.machine(), "torch_threads": torch.get_num_threads()}
