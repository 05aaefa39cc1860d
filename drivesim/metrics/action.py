"""Action adherence: ego speed and yaw rate recovered from video by the attribute encoder, against
the commanded ones (generated) or the true ones (real clips).

Each video is cut into windows of `window` frames every `stride` frames; the encoder predicts the
window's mean speed and yaw rate, compared with the mean of the commanded values over the window's
frames. A quantity whose command is unknown in a window (a scenario may command speed alone) is NaN there
and left out of that quantity's error only. Errors are mean absolute errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from drivesim.metrics.nets.attrnet import AttributeEncoder
from drivesim.metrics.videos import EvalVideo

WINDOW = 8
STRIDE = 4


@dataclass
class ActionSeries:
    times: np.ndarray  # window midpoints, seconds from the first evaluated frame
    speed_error: np.ndarray  # |predicted - commanded|, m/s; NaN where the window's speed command is unknown
    yaw_rate_error: np.ndarray  # rad/s; NaN where its yaw-rate command is unknown


def action_series(encoder: AttributeEncoder, video: EvalVideo, start: int = 0, window: int = WINDOW,
                  stride: int = STRIDE) -> ActionSeries:
    if video.conditions is None:
        raise ValueError(f"{video.name}: no per-frame conditions, so no commanded actions to compare with")
    frames, conds = video.frames[start:], video.conditions[start:]
    starts = list(range(0, len(conds) - window + 1, stride))
    times, speed_err, yaw_err, clips = [], [], [], []
    commands = []
    for s in starts:
        speed = np.array([c.ego_speed for c in conds[s:s + window]], np.float64)
        yaw = np.array([c.ego_yaw_rate for c in conds[s:s + window]], np.float64)
        known_speed, known_yaw = bool(np.isfinite(speed).all()), bool(np.isfinite(yaw).all())
        if not (known_speed or known_yaw):
            continue
        clips.append(frames[s:s + window])
        commands.append((speed.mean() if known_speed else math.nan, yaw.mean() if known_yaw else math.nan))
        times.append((s + window / 2) / video.fps)
    if clips:
        with torch.no_grad():
            preds = [encoder(torch.stack(clips[i:i + 8])) for i in range(0, len(clips), 8)]
        speed_pred = torch.cat([p["speed"] for p in preds]).double().numpy()
        yaw_pred = torch.cat([p["yaw_rate"] for p in preds]).double().numpy()
        cmd = np.array(commands)
        speed_err, yaw_err = list(np.abs(speed_pred - cmd[:, 0])), list(np.abs(yaw_pred - cmd[:, 1]))
    return ActionSeries(np.array(times), np.array(speed_err), np.array(yaw_err))


def known(series: list[ActionSeries], quantity: str) -> tuple[np.ndarray, np.ndarray]:
    """(times, errors) of the windows where `quantity` ("speed" or "yaw_rate") was commanded."""
    times = np.concatenate([s.times for s in series]) if series else np.zeros(0)
    errors = np.concatenate([getattr(s, f"{quantity}_error") for s in series]) if series else np.zeros(0)
    keep = np.isfinite(errors)
    return times[keep], errors[keep]


def mean_error(series: list[ActionSeries], quantity: str) -> tuple[float, int]:
    """The MAE of `quantity` over the windows that command it, and their count (NaN, 0 if none does)."""
    _, errors = known(series, quantity)
    return (float(errors.mean()), int(errors.size)) if errors.size else (math.nan, 0)
