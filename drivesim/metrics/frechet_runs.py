"""Running a Frechet metric over evaluated videos: features with their rollout times (for drift),
real-side statistics cached per dataset, protocol and extractor hash."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from drivesim.metrics.drift import windows
from drivesim.metrics.extractors import cache_dir
from drivesim.metrics.frechet_metric import FrechetMetric
from drivesim.metrics.real_cache import find_cached, key_matches
from drivesim.progress import progress

log = logging.getLogger(__name__)


@dataclass
class Unit:
    """One batch to extract: frames (N, 3, H, W) or clips (N, T, 3, H, W), and each item's rollout time (s)."""

    data: torch.Tensor
    times: np.ndarray


def cache_path(name: str, key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:24]
    return cache_dir() / "features" / f"{name}-{digest}.safetensors"


def _holds(path: Path, name: str, key: dict) -> bool:
    """Whether a feature file's metadata holds `key` (files written before keys were stored: by name only)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
    except (SafetensorError, OSError):
        return False
    return "key" not in meta or key_matches(meta, name, key)


class NotEnoughSamples(ValueError):
    """Fewer than 2 samples on a side: no covariance, so no Frechet distance (one line)."""


def _extract(metric: FrechetMetric, units: Iterable[Unit], total: int, what: str, real: bool,
             keep: bool) -> tuple[torch.Tensor, np.ndarray]:
    """Feed every unit's features to the metric; keep them (float32) with their times if asked (for drift)."""
    feats, times = [], []
    for unit in progress(units, what, total=total):
        if unit.data.shape[0] == 0:
            continue
        f = metric.features(unit.data)
        metric.update(f, real=real, precomputed=True)
        if keep:
            feats.append(f.to(torch.float32))
            times.append(unit.times)
    if not feats:
        return torch.zeros(0, metric.num_features), np.zeros(0)
    return torch.cat(feats), np.concatenate(times)


def run_frechet(name: str, metric: FrechetMetric, generated: Iterable[Unit], real: Callable[[], Iterable[Unit]],
                totals: tuple[int, int], cache_key: dict | None, window_seconds: float) -> dict:
    """The metric's value, sample counts, and the value per rollout window against the whole real set.

    `generated` and `real()` yield units one video at a time, so memory holds one video (plus the
    generated features, float32, for the drift windows); `totals` are their lengths, for progress bars.
    """
    path = cache_path(name, cache_key) if cache_key is not None else None
    found = find_cached(path.relative_to(cache_dir()).as_posix()) if path is not None else None
    if found is not None and cache_key is not None and not _holds(found, name, cache_key):
        log.warning("%s: not a usable feature cache file for this key: computing the real side again", found)
        found = None
    cached = found is not None
    if found is not None:
        metric.load_real(found)
        log.info("%s: real-side features from the cache %s", name, found)
    else:
        _extract(metric, real(), totals[1], f"{name}: real features", real=True, keep=False)
    fake, times = _extract(metric, generated, totals[0], f"{name}: generated features", real=False, keep=True)
    for side in (True, False):
        if metric.count(real=side) < 2:
            raise NotEnoughSamples(f"{name}: {metric.count(real=side)} {'real' if side else 'generated'} sample(s); "
                                   "a Frechet distance needs at least 2 per side")
    if path is not None and not cached:
        metric.save_real(path, {"metric": name, "key": json.dumps(cache_key, sort_keys=True, default=str)})
    value = float(metric.compute())
    real_stats = metric.stats(real=True)
    rows = []
    for w in windows(times, np.ones(len(times)), window_seconds):
        sel = (times >= w.start - 1e-9) & (times < w.end - 1e-9)
        if sel.sum() >= 2:
            rows.append({"start": w.start, "end": w.end, "n": int(sel.sum()),
                         "value": real_stats.distance_to_samples(fake[torch.from_numpy(sel)])})
    slope = float(np.polyfit([(r["start"] + r["end"]) / 2 for r in rows], [r["value"] for r in rows], 1)[0]) \
        if len(rows) >= 2 else None
    return {"value": value, "n": metric.count(real=False), "n_real": metric.count(real=True), "real_cached": cached,
            "drift": {"window_seconds": window_seconds, "slope_per_second": slope, "windows": rows}}
