"""Action adherence: ego speed and yaw rate recovered from video by the attribute encoder, against
the commanded ones (generated) or the true ones (real clips).

Each video is cut into windows of `window` frames every `stride` frames; the encoder predicts the
window's mean speed and yaw rate, compared with the mean of the commanded values over the window's
frames (windows with an unknown command are left out). Errors are mean absolute errors.
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
    speed_error: np.ndarray  # |predicted - commanded|, m/s
    yaw_rate_error: np.ndarray  # rad/s


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
        if not (np.isfinite(speed).all() and np.isfinite(yaw).all()):
            continue
        clips.append(frames[s:s + window])
        commands.append((speed.mean(), yaw.mean()))
        times.append((s + window / 2) / video.fps)
    if clips:
        with torch.no_grad():
            preds = [encoder(torch.stack(clips[i:i + 8])) for i in range(0, len(clips), 8)]
        speed_pred = torch.cat([p["speed"] for p in preds]).double().numpy()
        yaw_pred = torch.cat([p["yaw_rate"] for p in preds]).double().numpy()
        cmd = np.array(commands)
        speed_err, yaw_err = list(np.abs(speed_pred - cmd[:, 0])), list(np.abs(yaw_pred - cmd[:, 1]))
    return ActionSeries(np.array(times), np.array(speed_err), np.array(yaw_err))


def mean_errors(series: list[ActionSeries]) -> tuple[float, float, int]:
    speed = np.concatenate([s.speed_error for s in series]) if series else np.zeros(0)
    yaw = np.concatenate([s.yaw_rate_error for s in series]) if series else np.zeros(0)
    if speed.size == 0:
        return math.nan, math.nan, 0
    return float(speed.mean()), float(yaw.mean()), int(speed.size)
