"""Layout adherence: do the conditioning boxes hold objects, and are there objects nowhere asked for?

A detector labels every pixel (0 = background). A conditioning box (evaluated-frame pixels) whose
shorter side is at least `min_box_px` is *found* when detected foreground covers at least `cover` of
its area; per-box recall = found / boxes. *Hallucinated area* = the fraction of the frame detected as
foreground outside every conditioning box (each grown by `margin` pixels). The same scores on real
frames with their true boxes show what the detector can see: below `MIN_REAL_RECALL` on real frames
it is too weak to judge anything, and the result says so.

Detectors: drivesim's `LayoutSegNet` (weights shipped, trained on the synthetic world), or for real
data any local TorchScript module mapping uint8 (N, 3, H, W) to labels (N, H, W) or logits (N, C, H, W).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from drivesim.metrics.extractors import MissingExtractorError, load_torchscript, sha256_file
from drivesim.metrics.videos import FrameCond

MIN_REAL_RECALL = 0.9


class Detector(Protocol):
    def predict(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, H, W) -> int64 labels (N, H, W), 0 = background."""
        ...

    def record(self) -> dict: ...


class TorchScriptDetector:
    """A user's segmentation/detection network as TorchScript: labels (N, H, W) or logits (N, C, H, W)."""

    def __init__(self, path: str | Path) -> None:
        from drivesim.metrics.extractors import ExtractorFile

        path = Path(path)
        if not path.is_file():
            raise MissingExtractorError(f"layout detector file {path} does not exist (a TorchScript module: "
                                        "uint8 (N, 3, H, W) -> labels (N, H, W) or logits (N, C, H, W))")
        self.file = ExtractorFile("layout-detector", path, sha256_file(path), None)
        self.module = load_torchscript(self.file)

    @torch.no_grad()
    def predict(self, frames: torch.Tensor) -> torch.Tensor:
        out = self.module(frames)
        return (out.argmax(1) if out.ndim == 4 else out).to(torch.int64)

    def record(self) -> dict:
        return self.file.record()


@dataclass
class LayoutFrames:
    """Per frame: boxes counted, boxes found, hallucinated area fraction."""

    boxes: np.ndarray
    found: np.ndarray
    hallucinated: np.ndarray

    def summary(self) -> dict:
        total = int(self.boxes.sum())
        return {"recall": float(self.found.sum() / total) if total else None, "boxes": total,
                "hallucinated_area": float(self.hallucinated.mean()) if self.hallucinated.size else None,
                "frames": int(self.hallucinated.size)}


def score_frames(labels: torch.Tensor, conditions: list[FrameCond], min_box_px: int = 16,
                 cover: float = 0.3, margin: int = 2) -> LayoutFrames:
    """Scores of predicted labels (T, H, W) against each frame's conditioning boxes."""
    if labels.ndim != 3 or len(conditions) != labels.shape[0]:
        raise ValueError(f"need labels (T, H, W) and T condition records, got {tuple(labels.shape)} and {len(conditions)}")
    fg = (labels > 0).cpu().numpy()
    t, h, w = fg.shape
    boxes, found, halluc = np.zeros(t, np.int64), np.zeros(t, np.int64), np.zeros(t)
    for k, cond in enumerate(conditions):
        allowed = np.zeros((h, w), bool)
        for box in cond.boxes:
            x0, y0, x1, y1 = box.xyxy
            allowed[max(0, int(np.floor(y0)) - margin):int(np.ceil(y1)) + margin,
                    max(0, int(np.floor(x0)) - margin):int(np.ceil(x1)) + margin] = True
            if min(x1 - x0, y1 - y0) < min_box_px:
                continue
            region = fg[k, int(round(y0)):int(round(y1)), int(round(x0)):int(round(x1))]
            boxes[k] += 1
            found[k] += int(region.size > 0 and region.mean() >= cover)
        halluc[k] = float((fg[k] & ~allowed).mean())
    return LayoutFrames(boxes, found, halluc)
