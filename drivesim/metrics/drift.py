"""Drift: a per-frame (or per-pair) metric averaged over windows of rollout time, and its slope."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Window:
    start: float  # seconds of rollout
    end: float
    value: float
    n: int


def windows(times: np.ndarray, values: np.ndarray, seconds: float) -> list[Window]:
    """Mean of the finite `values` in consecutive windows [k * seconds, (k + 1) * seconds)."""
    if seconds <= 0:
        raise ValueError(f"window seconds must be > 0, got {seconds}")
    times, values = np.asarray(times, np.float64), np.asarray(values, np.float64)
    keep = np.isfinite(values)
    times, values = times[keep], values[keep]
    if times.size == 0:
        return []
    index = np.floor(times / seconds + 1e-9).astype(int)
    out = []
    for k in np.unique(index):
        sel = index == k
        out.append(Window(float(k * seconds), float((k + 1) * seconds), float(values[sel].mean()), int(sel.sum())))
    return out


def slope(rows: list[Window]) -> float | None:
    """Least-squares slope (value per second) of the window means against window centres; None under 2."""
    if len(rows) < 2:
        return None
    x = np.array([(w.start + w.end) / 2 for w in rows])
    y = np.array([w.value for w in rows])
    return float(np.polyfit(x, y, 1)[0])


def drift_record(times: np.ndarray, values: np.ndarray, seconds: float) -> dict:
    rows = windows(times, values, seconds)
    return {"window_seconds": seconds, "slope_per_second": slope(rows),
            "windows": [{"start": w.start, "end": w.end, "value": w.value, "n": w.n} for w in rows]}
