"""Streaming writers of the generated video: H.264 MP4 (PyAV), boxes drawn by id, the contact sheet.

Each writer takes frames one at a time (uint8 (H, W, 3) RGB) and writes to a temp file that replaces
its target only when closed without error, so a killed run never leaves a half-written output.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from contextlib import ExitStack
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import av
import cv2
import numpy as np

from drivesim.atomic import atomic_path
from drivesim.scenario.timeline import BoxRecord


class Mp4Writer:
    """H.264 (libx264, yuv420p) at `fps`; even frame sizes are needed by 4:2:0 chroma (odd ones are padded)."""

    def __init__(self, path: str | Path, fps: float, crf: int = 18) -> None:
        self.path = Path(path)
        self.fps = Fraction(fps).limit_denominator(1001)
        self.crf = crf
        self._stack = ExitStack()
        self._container: Any = None
        self._stream: Any = None
        self.frames = 0

    def __enter__(self) -> Mp4Writer:
        tmp = self._stack.enter_context(atomic_path(self.path))
        self._container = av.open(str(tmp), mode="w", format="mp4")
        return self

    def write(self, frame: np.ndarray) -> None:
        h, w = frame.shape[:2]
        if self._stream is None:
            self._stream = self._container.add_stream("libx264", rate=self.fps)
            self._stream.width, self._stream.height = w + w % 2, h + h % 2
            self._stream.pix_fmt = "yuv420p"
            self._stream.options = {"crf": str(self.crf), "preset": "medium"}
        if h % 2 or w % 2:
            frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        for packet in self._stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
            self._container.mux(packet)
        self.frames += 1

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if exc_type is None and self._stream is not None:
                for packet in self._stream.encode():
                    self._container.mux(packet)
        finally:
            self._container.close()
            self._stack.__exit__(exc_type, exc, tb)


def id_colour(box_id: str) -> tuple[int, int, int]:
    """A stable bright RGB colour per agent id."""
    h = zlib.crc32(box_id.encode())
    hsv = np.array([[[h % 180, 200, 255]]], dtype=np.uint8)
    r, g, b = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0]
    return int(r), int(g), int(b)


def draw_boxes(frame: np.ndarray, boxes: Sequence[BoxRecord]) -> np.ndarray:
    """A copy of `frame` with each box drawn and labelled by its id."""
    out = np.ascontiguousarray(frame.copy())
    h, w = out.shape[:2]
    scale = max(0.3, min(w, h) / 400)
    for b in boxes:
        x0, y0, x1, y1 = (int(round(v)) for v in (b.xyxy[0] * w, b.xyxy[1] * h, b.xyxy[2] * w, b.xyxy[3] * h))
        colour = id_colour(b.id)
        cv2.rectangle(out, (x0, y0), (max(x0, x1 - 1), max(y0, y1 - 1)), colour, 1)
        cv2.putText(out, b.id, (x0 + 1, max(y0 - 2, 8)), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)
    return out


def contact_sheet_frames(total: int, count: int = 8) -> list[int]:
    """Evenly spaced frame indices, first and last included."""
    if total <= count:
        return list(range(total))
    return sorted({round(i * (total - 1) / (count - 1)) for i in range(count)})


def write_contact_sheet(path: str | Path, frames: Sequence[np.ndarray], labels: Sequence[str], columns: int = 4) -> None:
    """A grid of `frames` with a caption each, as PNG."""
    if not frames:
        raise ValueError("a contact sheet needs at least one frame")
    h, w = frames[0].shape[:2]
    rows = (len(frames) + columns - 1) // columns
    cols = min(columns, len(frames))
    sheet = np.zeros((rows * h, cols * w, 3), dtype=np.uint8)
    for i, (frame, label) in enumerate(zip(frames, labels)):
        r, c = divmod(i, cols)
        tile = np.ascontiguousarray(frame.copy())
        cv2.putText(tile, label, (2, h - 3), cv2.FONT_HERSHEY_SIMPLEX, max(0.3, h / 300), (255, 255, 255), 1,
                    cv2.LINE_AA)
        sheet[r * h:(r + 1) * h, c * w:(c + 1) * w] = tile
    with atomic_path(path) as tmp:
        ok, data = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
        if not ok:
            raise OSError(f"{path}: PNG encoding failed")
        tmp.write_bytes(data.tobytes())
