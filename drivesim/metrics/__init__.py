"""Evaluation: FID (the real FID Inception, offline), FVD (a local I3D), drivesim's synthetic-domain
Frechet distances, layout / temporal / action adherence, drift, and the protocol record of each result.

Heavy modules load on first use: `from drivesim.metrics import FID` imports torchmetrics, not OpenCV.
"""

from __future__ import annotations

from typing import Any

from drivesim.metrics.frechet import GaussianStats, frechet_distance

_LAZY = {
    "FID": "drivesim.metrics.fid",
    "FVD": "drivesim.metrics.fvd",
    "FrechetMetric": "drivesim.metrics.frechet_metric",
    "FIDSynth": "drivesim.metrics.synth_frechet",
    "FVDSynth": "drivesim.metrics.synth_frechet",
    "MissingExtractorError": "drivesim.metrics.extractors",
    "evaluate_folder": "drivesim.metrics.evaluate",
    "load_protocol": "drivesim.metrics.protocol",
    "EvalVideo": "drivesim.metrics.videos",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'drivesim.metrics' has no attribute {name!r}")


__all__ = ["GaussianStats", "frechet_distance", *_LAZY]
