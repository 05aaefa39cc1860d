"""FVD on a Kinetics-400 I3D loaded from a local TorchScript file (StyleGAN-V's `i3d_torchscript.pt`).

Facts of the protocol `fvd-i3d-styleganv`, and their sources:
- the detector is the TorchScript port of the tf.hub I3D used by the original FVD (Unterthiner et al.
  2018, google-research `frechet_video_distance.py`), published by StyleGAN-V (Skorokhodov et al. 2022,
  `src/metrics/frechet_video_distance.py`), which reports it reproduces the TF numbers;
- input: videos as float (N, 3, T, H, W) with uint8 values in [0, 255]; the call
  `detector(x, rescale=True, resize=True, return_features=True)` (StyleGAN-V's `detector_kwargs`) lets
  the module scale to [-1, 1] and resize every frame to 224x224 itself;
- output: `return_features=True` gives the 400-d pre-softmax logits, the output the original FVD takes;
- clip length: 16 frames (the original FVD and StyleGAN-V's `fvd2048_16f`); the protocol records it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from drivesim.metrics.extractors import ExtractorFile, load_torchscript, locate_i3d
from drivesim.metrics.fid import probe_features
from drivesim.metrics.frechet_metric import FrechetMetric

FVD_PROTOCOL = "fvd-i3d-styleganv"
I3D_KWARGS = {"rescale": True, "resize": True, "return_features": True}


def check_videos(videos: torch.Tensor, what: str = "videos") -> None:
    if videos.dtype != torch.uint8 or videos.ndim != 5 or videos.shape[2] != 3:
        raise ValueError(f"{what} must be uint8 (N, T, 3, H, W), got {videos.dtype} {tuple(videos.shape)}")


class FVD(FrechetMetric):
    """FVD over uint8 `(N, T, 3, H, W)` videos: `update(videos, real=bool)`, `compute()`, `reset()`.

    `extractor`: the I3D TorchScript file (else `$DRIVESIM_I3D`); a missing file raises here.
    """

    def __init__(self, extractor: str | Path | None = None, batch_size: int = 4, **kwargs: Any) -> None:
        self.file: ExtractorFile = locate_i3d(extractor)
        model = load_torchscript(self.file)
        dims = probe_features(model, torch.zeros(1, 3, 16, 64, 64), **I3D_KWARGS)
        super().__init__(dims, **kwargs)
        self.extractor = model
        self.batch_size = int(batch_size)

    def features(self, batch: torch.Tensor) -> torch.Tensor:
        check_videos(batch)
        out = []
        for start in range(0, batch.shape[0], self.batch_size):
            x = batch[start:start + self.batch_size].cpu().to(torch.float32).permute(0, 2, 1, 3, 4)
            with torch.no_grad():
                out.append(self.extractor(x.contiguous(), **I3D_KWARGS).to(torch.float64))
        return torch.cat(out) if out else torch.zeros(0, self.num_features, dtype=torch.float64)

    def protocol(self) -> dict[str, Any]:
        return {"name": FVD_PROTOCOL, "extractor": self.file.record(),
                "input": "uint8 (N, T, 3, H, W) -> float (N, 3, T, H, W) in [0, 255]",
                "call": "detector(x, rescale=True, resize=True, return_features=True)",
                "resize": "224x224 inside the detector", "features": f"{self.num_features}-d logits"}
