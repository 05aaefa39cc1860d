"""Temporal consistency on hand-made videos with known answers, closeness, and drift windows."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from drivesim.metrics.drift import drift_record, slope, windows
from drivesim.metrics.temporal import closeness, pooled, temporal_series, temporal_series_many


def texture(h: int = 160, w: int = 320, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (7, 7), 2)


def panning(frames: int, step: int) -> torch.Tensor:
    tex = texture()
    out = [tex[10:74, 10 + step * t:138 + step * t] for t in range(frames)]
    return torch.from_numpy(np.ascontiguousarray(np.stack(out))).permute(0, 3, 1, 2).contiguous()


def movers(frames: int, seed: int = 0) -> torch.Tensor:
    """Two textured squares moving in opposite directions over a textured background."""
    bg, fg = texture(64, 128, seed), texture(64, 128, seed + 1)
    out = []
    for t in range(frames):
        im = bg.copy()
        im[10:30, 10 + 3 * t:30 + 3 * t] = fg[10:30, 10:30]
        im[34:54, 100 - 3 * t:120 - 3 * t] = fg[34:54, 60:80]
        out.append(im)
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


def test_a_pan_has_its_flow_and_almost_no_warp_error() -> None:
    s = temporal_series(panning(6, 2), fps=12)
    assert s.flow_magnitude == pytest.approx(np.full(5, 2.0), abs=0.05)
    assert s.warp_error.max() < 1e-3
    np.testing.assert_allclose(s.times, (np.arange(5) + 0.5) / 12)


def test_shuffled_frames_raise_the_warp_error() -> None:
    clip = movers(10)
    order = torch.tensor([0, 7, 2, 9, 4, 1, 6, 3, 8, 5])
    ordered, shuffled = pooled([temporal_series(clip, 12)]), pooled([temporal_series(clip[order], 12)])
    assert shuffled[0] > 2 * ordered[0]


def test_a_frozen_video_scores_badly_but_finitely() -> None:
    real = pooled([temporal_series(movers(8), 12)])
    frozen = pooled([temporal_series(movers(8)[:1].expand(8, -1, -1, -1).contiguous(), 12)])
    assert frozen[0] == 0.0 and frozen[1] == pytest.approx(0.0, abs=1e-3)
    perfect = closeness(real[0], real[0], 1e-3)
    bad = closeness(frozen[0], real[0], 1e-3)
    assert perfect == 0.0 and math.isfinite(bad) and bad > 1.0
    assert closeness(0.0, 0.0, 1e-3) == 0.0
    with pytest.raises(ValueError, match="eps"):
        closeness(1.0, 1.0, 0.0)


def test_temporal_rejects_bad_frames() -> None:
    with pytest.raises(ValueError, match="uint8"):
        temporal_series(torch.zeros(3, 3, 8, 8), 12)


def test_drift_windows_and_slope() -> None:
    times = np.arange(0, 6, 0.5)
    values = 1.0 + 0.5 * np.floor(times / 2)  # 1.0, 1.5, 2.0 over three 2 s windows
    rows = windows(times, values, 2.0)
    assert [w.value for w in rows] == [1.0, 1.5, 2.0] and [w.n for w in rows] == [4, 4, 4]
    assert slope(rows) == pytest.approx(0.25)
    values[3] = np.nan
    record = drift_record(times, values, 2.0)
    assert record["windows"][0]["n"] == 3 and record["slope_per_second"] == pytest.approx(0.25)
    assert slope(rows[:1]) is None


def test_videos_in_parallel_score_as_one_by_one_in_order() -> None:
    videos = [(panning(5, step), 12.0) for step in (1, 3)] + [(movers(6, seed), 24.0) for seed in (0, 1, 2)]
    serial = [temporal_series(v, fps) for v, fps in videos]
    parallel = temporal_series_many(iter(videos), workers=2)
    assert len(parallel) == len(serial)
    for a, b in zip(parallel, serial):
        assert np.array_equal(a.times, b.times) and np.array_equal(a.warp_error, b.warp_error)
        assert np.array_equal(a.flow_magnitude, b.flow_magnitude)
    with pytest.raises(ValueError, match="uint8"):  # a bad video fails the call, it is not dropped
        temporal_series_many([(panning(4, 1), 12.0), (torch.zeros(3, 3, 8, 8), 12.0)], workers=2)
