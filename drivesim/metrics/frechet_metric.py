"""A torchmetrics `Metric` for Frechet distances over the features of any extractor.

States are sums (feature sum, sum of outer products, count; float64) per side, reduced by summing,
so `compute()` gives the same value on one process or synced across many. Subclasses say how a
batch becomes features (`features`). The real side's state can be saved and loaded, so features of
a real dataset are computed once (see `drivesim.metrics.cache`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torchmetrics import Metric

from drivesim.atomic import atomic_path
from drivesim.metrics.frechet import GaussianStats

_SIDES = ("real", "fake")


class FrechetMetric(Metric):
    """Squared Frechet distance between the feature Gaussians of the real and the generated samples."""

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, num_features: int, **kwargs) -> None:
        super().__init__(**kwargs)
        if num_features < 1:
            raise ValueError(f"num_features must be >= 1, got {num_features}")
        self.num_features = int(num_features)
        d = self.num_features
        for side in _SIDES:
            self.add_state(f"{side}_sum", torch.zeros(d, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{side}_outer", torch.zeros(d, d, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{side}_n", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def features(self, batch: torch.Tensor) -> torch.Tensor:
        """(N, D) features of a batch of inputs; subclasses define it."""
        raise NotImplementedError

    def update(self, batch: torch.Tensor, real: bool, precomputed: bool = False) -> None:  # type: ignore[override]
        """Add a batch of inputs (or, with `precomputed=True`, of already-extracted (N, D) features)."""
        self._accumulate(batch if precomputed else self.features(batch), real)

    def _accumulate(self, features: torch.Tensor, real: bool) -> None:
        if features.ndim != 2 or features.shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}: features must be (N, {self.num_features}), "
                             f"got {tuple(features.shape)}")
        f = features.detach().to(torch.float64)
        side = "real" if real else "fake"
        setattr(self, f"{side}_sum", getattr(self, f"{side}_sum") + f.sum(0))
        setattr(self, f"{side}_outer", getattr(self, f"{side}_outer") + f.T @ f)
        setattr(self, f"{side}_n", getattr(self, f"{side}_n") + f.shape[0])

    def stats(self, real: bool) -> GaussianStats:
        side = "real" if real else "fake"
        n = int(getattr(self, f"{side}_n"))
        if n < 2:
            raise ValueError(f"{type(self).__name__}: {n} {side} sample(s); a Frechet distance needs at least 2 per side")
        return GaussianStats.from_sums(getattr(self, f"{side}_sum"), getattr(self, f"{side}_outer"), n)

    def compute(self) -> torch.Tensor:
        return torch.tensor(self.stats(real=True).distance(self.stats(real=False)), dtype=torch.float64)

    def count(self, real: bool) -> int:
        return int(getattr(self, f"{'real' if real else 'fake'}_n"))

    def save_real(self, path: str | Path, metadata: dict[str, str] | None = None) -> None:
        """Write the real side's sums (safetensors, atomically), e.g. to a feature cache."""
        tensors = {name: getattr(self, f"real_{name}").detach().cpu().contiguous() for name in ("sum", "outer", "n")}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=metadata or {})

    def load_real(self, path: str | Path) -> None:
        """Replace the real side's sums by those saved with `save_real`."""
        try:
            tensors = load_file(str(path))
        except Exception as exc:  # noqa: BLE001 - any unreadable file is one line naming it
            raise ValueError(f"{path}: not a readable feature-statistics file ({exc})") from exc
        if set(tensors) != {"sum", "outer", "n"} or tensors["sum"].shape != (self.num_features,):
            raise ValueError(f"{path}: holds no {self.num_features}-d feature statistics")
        for name, value in tensors.items():
            setattr(self, f"real_{name}", value.to(getattr(self, f"real_{name}").device))
