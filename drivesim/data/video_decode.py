"""Frame-accurate random access into one video with PyAV.

For each run of wanted frames: seek to the key frame at or before the first one (from the index),
decode forward and keep the frames whose presentation timestamps were asked for. Frames are
matched by PTS, never by counting, so variable frame rate and B-frames are handled.
"""

from __future__ import annotations

import bisect
from pathlib import Path
from typing import Any

import av
import numpy as np

from drivesim.data.errors import DataError
from drivesim.data.video_index import VideoIndex


def pick_frames(index: VideoIndex, times: np.ndarray) -> np.ndarray:
    """For each target time (s from the first frame), the index of the latest frame at or before it.

    Frame times are the stored presentation timestamps, as a sequential decode reports them; the
    1 us slack only absorbs float error in the target times (k / fps), never a whole tick: a 30 fps
    frame stored at 0.667 s in a 1 ms time base is after the 2/3 s target.
    """
    seconds = index.seconds
    slack = 1e-6
    picks = np.searchsorted(seconds, np.asarray(times, np.float64) + slack, side="right") - 1
    return picks.clip(0, len(seconds) - 1)


def _preceding_keyframe(index: VideoIndex, pts: int) -> int:
    i = bisect.bisect_right(index.keyframes, pts) - 1
    return index.keyframes[max(i, 0)]


def display_rgb(frame: av.VideoFrame, rotation: int) -> np.ndarray:
    """A decoded frame as (H, W, 3) uint8 RGB, turned by the stream's display rotation (degrees)."""
    image: np.ndarray = frame.to_ndarray(format="rgb24")
    if rotation:
        return np.ascontiguousarray(np.rot90(image, k=rotation // 90))
    return image


def _decode_from_start(container: Any, stream: Any, index: VideoIndex, wanted: set[int],
                       out: dict[int, np.ndarray]) -> None:
    """Decode the whole stream once from its first frame. With `index.decode_order` (an AVI's stamps are decode
    times) the decoder still hands frames out in display order: the k-th frame out is shown at the k-th time of the
    index. Otherwise each frame keeps its own pts (a frame the decoder drops must not shift the ones after it)."""
    container.seek(min(0, index.pts[0], index.keyframes[0]), stream=stream, backward=True, any_frame=False)
    shown = iter(index.pts)
    for frame in container.decode(stream):
        pts = next(shown, None) if index.decode_order else (int(frame.pts) if frame.pts is not None else None)
        if pts is None:
            if index.decode_order:
                return
            continue
        if pts in wanted and pts not in out:
            out[pts] = display_rgb(frame, index.rotation)
            if not wanted - out.keys():
                return


def _first_missing(todo: list[int], out: dict[int, np.ndarray]) -> int:
    return next((k for k, t in enumerate(todo) if t not in out), len(todo))


def read_frames(path: Path, index: VideoIndex, wanted: list[int]) -> dict[int, np.ndarray]:
    """Decode the frames with the given PTS values -> {pts: (H, W, 3) uint8 RGB in display orientation}."""
    todo = sorted(set(wanted))
    out: dict[int, np.ndarray] = {}
    i = 0
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        raise DataError(path, f"cannot open as a video since it was indexed ({exc.__class__.__name__}: {exc})") from exc
    # A seek lands on the key frame before each wanted frame. Some containers seek by decode time and carry no
    # real presentation times (AVI with B-frames): the seek lands past that key frame, or the decoder hands frames
    # out of time order. Then the rest is decoded once from the start, every wanted frame taken as it comes.
    try:
        with container:
            stream = container.streams.video[0]
            if index.decode_order:
                _decode_from_start(container, stream, index, set(todo), out)
                i = _first_missing(todo, out)
            else:
                while i < len(todo):
                    container.seek(_preceding_keyframe(index, todo[i]), stream=stream, backward=True, any_frame=False)
                    for frame in container.decode(stream):
                        if frame.pts is None:
                            continue
                        pts = int(frame.pts)
                        if pts > todo[i]:
                            _decode_from_start(container, stream, index, set(todo[i:]), out)
                            i = _first_missing(todo, out)
                            if i < len(todo):
                                raise DataError(path, f"corrupt: the frame with pts {todo[i]} is missing from the decoded stream")
                            break
                        if pts == todo[i]:
                            out[pts] = display_rgb(frame, index.rotation)
                            i += 1
                            if i == len(todo):
                                break
                            if _preceding_keyframe(index, todo[i]) > pts:
                                break  # the next wanted frame is past a key frame: seek instead of decoding the gap
                    else:
                        break  # the stream ended before the wanted frame
    except av.FFmpegError as exc:
        raise DataError(path, f"corrupt or truncated: decoding failed ({exc})") from exc
    if i < len(todo):
        num, den = index.time_base
        t = (todo[i] - index.pts[0]) * num / den
        raise DataError(path, f"corrupt or truncated: the frame at t={t:.3f}s does not decode")
    for pts, image in out.items():
        if image.shape[:2] != (index.height, index.width):
            raise DataError(path, f"frame at pts {pts} is {image.shape[1]}x{image.shape[0]}, the index says {index.width}x{index.height}")
    return out
