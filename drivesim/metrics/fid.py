"""FID on the FID Inception-v3 (TF 2015-12-05 weights), computed offline, under protocol `fid-inception-tf`.

Protocol `fid-inception-tf` (StyleGAN3's FID tool and clean-fid's `legacy_tensorflow` mode): uint8 RGB
frames -> float32 in [0, 255] -> `F.interpolate` to 299x299, bilinear, `align_corners=False`, no
antialias -> `(x - 128) / 128` -> the TorchScript Inception's 2048-d pool features.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from drivesim.metrics.distinct import per_distinct_frame
from drivesim.metrics.extractors import ExtractorFile, load_torchscript, locate_inception
from drivesim.metrics.frechet_metric import FrechetMetric

FID_PROTOCOL = "fid-inception-tf"
FID_INPUT = 299
INCEPTION_FEATURES = 2048


def check_frames(frames: torch.Tensor, what: str = "frames") -> None:
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"{what} must be uint8 (N, 3, H, W), got {frames.dtype} {tuple(frames.shape)}")


def preprocess_fid(frames: torch.Tensor, size: int = FID_INPUT) -> torch.Tensor:
    """The `fid-inception-tf` preprocessing of uint8 (N, 3, H, W) frames."""
    check_frames(frames)
    x = frames.to(torch.float32)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
    return (x - 128.0) / 128.0


def probe_features(module: nn.Module, example: torch.Tensor, **kwargs: Any) -> int:
    with torch.no_grad():
        out = module(example, **kwargs)
    if out.ndim != 2:
        raise ValueError(f"the extractor must return (N, D) features, returned shape {tuple(out.shape)}")
    return int(out.shape[1])


class FID(FrechetMetric):
    """FID over uint8 `(N, 3, H, W)` frames: `update(frames, real=bool)`, `compute()`, `reset()`.

    `extractor`: None for the packaged FID Inception (`$DRIVESIM_INCEPTION`, then the cache filled by
    `drivesim fetch inception`), or a path to another TorchScript file taking the same input.
    `dtype`: the extraction precision (float32 is the protocol; bfloat16 is faster on some CPUs).
    """

    def __init__(self, extractor: str | Path | None = None, batch_size: int = 8,
                 dtype: torch.dtype = torch.float32, **kwargs: Any) -> None:
        self.file: ExtractorFile = locate_inception(extractor)
        model = load_torchscript(self.file).to(dtype)
        default = self.file.expected_sha256 is not None and self.file.sha256 == self.file.expected_sha256
        dims = INCEPTION_FEATURES if default else probe_features(
            model, torch.zeros(1, 3, FID_INPUT, FID_INPUT, dtype=dtype))
        super().__init__(dims, **kwargs)
        self.extractor = model
        self.batch_size, self.feature_dtype = int(batch_size), dtype

    def features(self, batch: torch.Tensor) -> torch.Tensor:
        check_frames(batch)
        if batch.shape[0] == 0:
            return torch.zeros(0, self.num_features, dtype=torch.float64)
        return per_distinct_frame(batch.cpu(), self._extract, self.batch_size)  # a held frame: one pass

    def _extract(self, frames: torch.Tensor) -> torch.Tensor:
        x = preprocess_fid(frames).to(self.feature_dtype)
        x = x.contiguous(memory_format=torch.channels_last)  # oneDNN's layout: 0.20 -> 0.15 s a frame, 2 cores
        with torch.no_grad():
            return self.extractor(x).to(torch.float64)

    def protocol(self) -> dict[str, Any]:
        return {"name": FID_PROTOCOL, "extractor": self.file.record(), "input": "uint8 RGB (N, 3, H, W)",
                "resize": f"F.interpolate to {FID_INPUT}x{FID_INPUT}, bilinear, align_corners=False, no antialias",
                "scale": "(x - 128) / 128", "features": f"{self.num_features}-d pool", "dtype": str(self.feature_dtype),
                "memory_format": "channels_last"}
