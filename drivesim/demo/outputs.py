"""side_by_side.mp4: the rendered scene (left) beside the generated video (right), frame for frame."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np

from drivesim.pipelines.writers import Mp4Writer

CHUNK = 48  # rendered frames read per call (memory does not grow with the video's length)


def rendered_frames(synth: Path, scene: str, start: float, fps: float, count: int,
                    size: tuple[int, int]) -> Iterator[np.ndarray]:
    """The scene's frames at `start + i / fps` (i < count), uint8 (H, W, 3); past the scene's end, its last."""
    from drivesim.pipelines.scene_clips import data_config, load_scene_clip

    data = data_config("synthetic", {"root": str(synth)}, "demo")
    last: np.ndarray | None = None
    for first in range(0, count, CHUNK):
        n = min(CHUNK, count - first)
        targets = start + (first + np.arange(n)) / fps
        clip = load_scene_clip(data, scene, targets, fps, size, 0, "demo", with_boxes=False).clip
        frames = clip.frames.permute(0, 2, 3, 1).numpy()
        for k in range(n):
            last = frames[k] if k < len(frames) else last
            assert last is not None
            yield last


def generated_frames(video: Path) -> Iterator[np.ndarray]:
    with av.open(str(video)) as container:
        for frame in container.decode(container.streams.video[0]):
            yield frame.to_ndarray(format="rgb24")


def _caption(frame: np.ndarray, text: str) -> np.ndarray:
    out = np.ascontiguousarray(frame)
    cv2.putText(out, text, (3, 11), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def write_side_by_side(out: Path, synth: Path, scene: str, start: float, fps: float, count: int,
                       size: tuple[int, int]) -> Path:
    path = out / "side_by_side.mp4"
    written = 0
    with Mp4Writer(path, fps) as writer:
        for real, fake in zip(rendered_frames(synth, scene, start, fps, count, size),
                              generated_frames(out / "video.mp4")):
            if real.shape != fake.shape:
                fake = cv2.resize(fake, (real.shape[1], real.shape[0]), interpolation=cv2.INTER_AREA)
            writer.write(np.concatenate([_caption(real, "rendered"), _caption(fake, "generated")], axis=1))
            written += 1
    if written != count:
        raise RuntimeError(f"{path}: wrote {written} frames, expected {count}")
    return path
