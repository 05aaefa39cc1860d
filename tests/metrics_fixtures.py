"""Test inputs for the metrics: tiny TorchScript extractors the tests script and save, a tiny render of
the synthetic world, and generate-format folders made from its clips."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from drivesim.config.synth import CameraConfig, SynthConfig


class TinyImageNet(nn.Module):
    """(N, 3, 299, 299) scaled frames -> (N, 6): fixed random projections of pooled colour statistics."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.proj = nn.Parameter(torch.randn(12, 6, generator=g), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)  # (N, 12)
        return torch.tanh(pooled @ self.proj)


class TinyI3D(nn.Module):
    """StyleGAN-V's I3D calling convention on (N, 3, T, H, W) floats in [0, 255] -> (N, 5)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.proj = nn.Parameter(torch.randn(6, 5, generator=g), requires_grad=False)

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:
        if rescale:
            x = x / 127.5 - 1.0
        mean = x.mean((2, 3, 4))
        motion = (x[:, :, 1:] - x[:, :, :-1]).abs().mean((2, 3, 4))
        feats = torch.cat([mean, motion], 1) @ self.proj
        return feats if return_features else torch.softmax(feats, 1)


def save_scripted(module: nn.Module, path: Path) -> Path:
    torch.jit.script(module).save(str(path))
    return path


def render_tiny_synth(root: Path, seed: int = 3, scenes: int = 1, seconds: float = 2.0) -> Path:
    from drivesim.synth.render import render_dataset

    return render_dataset(SynthConfig(out=str(root), scenes=scenes, seconds=seconds, seed=seed,
                                      camera=CameraConfig(width=256, height=128)))


def tiny_recipe(kind: str, work: Path, steps: int = 3, out: Path | None = None):
    from drivesim.metrics.nets.train import Recipe

    return Recipe(kind, work, steps=steps, batch=2, scenes=1, seconds=2.0, train_seeds=(1000,), val_seeds=(1014,),
                  tiny=True, save_every=2, out=out)


def train_tiny_weights(work: Path, validate: bool = False) -> Path:
    """Both metric networks at test size, a few steps each, into work/weights (for $DRIVESIM_METRIC_WEIGHTS)."""
    from drivesim.metrics.nets.train import train
    from drivesim.metrics.nets.validate import validate as run_validation
    from drivesim.metrics.nets.weights import NETS

    folder = work / "weights"
    for kind, spec in NETS.items():
        train(tiny_recipe(kind, work, out=folder / spec.filename), run_validation if validate else None)
    return folder
