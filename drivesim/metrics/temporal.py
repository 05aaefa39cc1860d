"""Temporal consistency: photometric error after optical-flow warping, and flow magnitude (OpenCV DIS).

For consecutive frames t, t+1, DIS flow (preset MEDIUM, on grey frames) maps each pixel of t to t+1;
frame t+1 is sampled back at those positions (bilinear) and compared with frame t: the mean
absolute RGB difference in [0, 1] over pixels whose source lies inside the image is the *warp error*,
the mean flow length in pixels the *flow magnitude*. A generated video is scored by its closeness to
real clips, |log((generated + e) / (real + e))| with the protocol's e, so a frozen video (no motion,
no error) scores badly but finitely.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np
import torch


@dataclass
class TemporalSeries:
    """Per consecutive pair of one video: time of the pair's midpoint (s), warp error, flow magnitude."""

    times: np.ndarray
    warp_error: np.ndarray
    flow_magnitude: np.ndarray


def _grey(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def pair_scores(a: np.ndarray, b: np.ndarray, flow_engine: cv2.DISOpticalFlow) -> tuple[float, float]:
    """(warp error, flow magnitude) of HWC uint8 RGB frames a -> b."""
    flow = flow_engine.calc(_grey(a), _grey(b), None)  # type: ignore[call-overload]
    h, w = a.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    map_x, map_y = gx + flow[..., 0], gy + flow[..., 1]
    warped = cv2.remap(b, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    inside = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
    if not inside.any():
        return math.nan, float(np.linalg.norm(flow, axis=-1).mean())
    diff = np.abs(a.astype(np.float32) - warped.astype(np.float32)).mean(-1) / 255.0
    return float(diff[inside].mean()), float(np.linalg.norm(flow, axis=-1).mean())


def temporal_series(frames: torch.Tensor, fps: float, start_time: float = 0.0) -> TemporalSeries:
    """Scores of every consecutive pair of uint8 (T, 3, H, W) frames."""
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"frames must be uint8 (T, 3, H, W), got {frames.dtype} {tuple(frames.shape)}")
    engine = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)  # type: ignore[attr-defined]
    images = frames.permute(0, 2, 3, 1).contiguous().numpy()
    warp, mag = [], []
    for t in range(len(images) - 1):
        e, m = pair_scores(images[t], images[t + 1], engine)
        warp.append(e)
        mag.append(m)
    times = start_time + (np.arange(len(warp)) + 0.5) / fps
    return TemporalSeries(times, np.array(warp), np.array(mag))


def temporal_series_many(videos: Iterable[tuple[torch.Tensor, float]], workers: int | None = None
                         ) -> list[TemporalSeries]:
    """`temporal_series` of each (frames, fps), in order, `workers` videos at a time (default: torch's thread
    count): DIS runs one thread per call and releases the GIL, so videos in parallel use every core (a
    60-s drive costs ~5 s on one); at most `workers` videos are held at once."""
    workers = max(1, workers or torch.get_num_threads())
    out: list[TemporalSeries] = []
    with ThreadPoolExecutor(workers) as pool:
        pending: deque[Future[TemporalSeries]] = deque()
        for frames, fps in videos:
            pending.append(pool.submit(temporal_series, frames, fps))
            if len(pending) >= workers:
                out.append(pending.popleft().result())
        out.extend(f.result() for f in pending)
    return out


def closeness(generated: float, real: float, eps: float) -> float:
    """|log((generated + eps) / (real + eps))|: 0 when equal, finite for any non-negative inputs."""
    if eps <= 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    return abs(math.log((max(generated, 0.0) + eps) / (max(real, 0.0) + eps)))


def pooled(series: list[TemporalSeries]) -> tuple[float, float, int]:
    """Mean warp error and flow magnitude over every finite pair of every video, and the pair count."""
    warp = np.concatenate([s.warp_error for s in series]) if series else np.zeros(0)
    mag = np.concatenate([s.flow_magnitude for s in series]) if series else np.zeros(0)
    keep = np.isfinite(warp)
    if not keep.any():
        return math.nan, math.nan, 0
    return float(warp[keep].mean()), float(mag[keep].mean()), int(keep.sum())
