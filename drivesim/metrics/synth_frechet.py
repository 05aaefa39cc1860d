"""FID-synth and FVD-synth: Frechet distances on the features of drivesim's synthetic attribute encoder.

FID-synth takes the encoder's pooled per-frame trunk features of uint8 (N, 3, H, W) frames; FVD-synth
its penultimate clip features of uint8 (N, T, 3, H, W) clips. Both are `FrechetMetric`s (sum states).
"""

from __future__ import annotations

from typing import Any

import torch

from drivesim.metrics.fid import check_frames
from drivesim.metrics.frechet_metric import FrechetMetric
from drivesim.metrics.fvd import check_videos
from drivesim.metrics.nets.attrnet import AttributeEncoder


class FIDSynth(FrechetMetric):
    """FID on the attribute encoder's frame features: `update(frames (N, 3, H, W) uint8, real=bool)`."""

    def __init__(self, encoder: AttributeEncoder, batch_size: int = 32, **kwargs: Any) -> None:
        super().__init__(encoder.config.widths[-1], **kwargs)
        self.encoder = encoder.eval()
        self.batch_size = batch_size

    def features(self, batch: torch.Tensor) -> torch.Tensor:
        check_frames(batch)
        with torch.no_grad():
            out = [self.encoder.frame_features(batch[i:i + self.batch_size]).to(torch.float64)
                   for i in range(0, batch.shape[0], self.batch_size)]
        return torch.cat(out)


class FVDSynth(FrechetMetric):
    """FVD on the attribute encoder's clip features: `update(videos (N, T, 3, H, W) uint8, real=bool)`."""

    def __init__(self, encoder: AttributeEncoder, batch_size: int = 8, **kwargs: Any) -> None:
        super().__init__(encoder.config.feature_dim, **kwargs)
        self.encoder = encoder.eval()
        self.batch_size = batch_size

    def features(self, batch: torch.Tensor) -> torch.Tensor:
        check_videos(batch)
        with torch.no_grad():
            out = [self.encoder.clip_features(batch[i:i + self.batch_size]).to(torch.float64)
                   for i in range(0, batch.shape[0], self.batch_size)]
        return torch.cat(out)
