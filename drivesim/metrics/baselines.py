"""Reference "generated" folders made from real clips: the real clips themselves (the floor) and simple
baselines (copy the last context frame, shuffle the frames). Written in `drivesim generate`'s format
(video.mp4, conditions.jsonl, run.json), so every metric reads them the way it reads a model's output.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from drivesim.atomic import atomic_write_text
from drivesim.metrics.videos import EvalVideo

BASELINES = ("real", "copy_last_frame", "shuffled")


def baseline_frames(video: EvalVideo, kind: str, context: int = 1, seed: int = 0) -> torch.Tensor:
    frames = video.frames
    if kind == "real":
        return frames
    if kind == "copy_last_frame":
        keep = max(1, context)
        return torch.cat([frames[:keep], frames[keep - 1:keep].expand(frames.shape[0] - keep, -1, -1, -1)])
    if kind == "shuffled":
        order = np.random.default_rng(seed).permutation(frames.shape[0])
        return frames[torch.from_numpy(order)]
    raise ValueError(f"unknown baseline {kind!r}; choose from {', '.join(BASELINES)}")


def write_mp4(path: Path, frames: torch.Tensor, fps: float, crf: int = 10) -> None:
    """uint8 (T, 3, H, W) frames as H.264 (even H and W), written atomically."""
    t, _, h, w = frames.shape
    if h % 2 or w % 2:
        raise ValueError(f"{path}: H.264 4:2:0 needs an even frame size, got {h}x{w}")
    from drivesim.pipelines.writers import Mp4Writer  # the one H.264 writer (atomic)

    with Mp4Writer(path, fps, crf=crf) as video:
        for frame in frames.permute(0, 2, 3, 1).contiguous().numpy():
            video.write(frame)


def _value(x: float) -> float | None:
    return None if not math.isfinite(x) else round(float(x), 6)


def write_generated_folder(out: str | Path, video: EvalVideo, frames: torch.Tensor | None = None,
                           run: dict | None = None) -> Path:
    """`out/video.mp4`, `out/conditions.jsonl` (boxes normalised by the frame size), `out/run.json`."""
    out = Path(out)
    frames = video.frames if frames is None else frames
    h, w = frames.shape[-2:]
    write_mp4(out / "video.mp4", frames, video.fps)
    if video.conditions is not None:
        lines = [json.dumps({"frame": k, "time": _value(c.time), "ego_speed": _value(c.ego_speed),
                             "ego_yaw_rate": _value(c.ego_yaw_rate),
                             "boxes": [{"id": b.id, "class": b.cls,
                                        "xyxy": [b.xyxy[0] / w, b.xyxy[1] / h, b.xyxy[2] / w, b.xyxy[3] / h]}
                                       for b in c.boxes]})
                 for k, c in enumerate(video.conditions)]
        atomic_write_text(out / "conditions.jsonl", "\n".join(lines) + "\n")
    atomic_write_text(out / "run.json", json.dumps({"fps": video.fps, **(run or {})}, indent=2) + "\n")
    return out
