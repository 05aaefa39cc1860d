"""Validation of the metric networks on VAL_SEEDS: what the weights' record and the issue's bars need.

Layout net: per-box recall on real synthetic frames (boxes >= 16 px) must reach 0.9.
Attribute encoder: held-out probe R2 (speed, yaw rate, agent count) and accuracy (labels), and
FVD-synth must rise steadily with the strength of Gaussian noise, blur and frame shuffling.
"""

from __future__ import annotations

import logging
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from drivesim.metrics.layout import MIN_REAL_RECALL, score_frames
from drivesim.metrics.nets.attrnet import REGRESSION_HEADS
from drivesim.metrics.nets.synth_data import AttrWindows, render_seeds, scenes_of
from drivesim.vocab import LABEL_VOCAB

log = logging.getLogger(__name__)

STRENGTHS = {"noise": (0.0, 8.0, 16.0, 32.0), "blur": (0.0, 1.0, 2.0, 4.0), "shuffle": (0.0, 0.25, 0.5, 1.0)}


def corrupt(clips: torch.Tensor, kind: str, strength: float, seed: int = 0) -> torch.Tensor:
    """uint8 (N, T, 3, H, W) clips with Gaussian noise (std in grey levels), Gaussian blur (sigma px) or
    a fraction of each clip's frames shuffled."""
    if strength == 0:
        return clips
    gen = torch.Generator().manual_seed(seed)
    if kind == "noise":
        noisy = clips.float() + strength * torch.randn(clips.shape, generator=gen)
        return noisy.round().clamp(0, 255).to(torch.uint8)
    if kind == "blur":
        arr = clips.permute(0, 1, 3, 4, 2).numpy()
        out = np.stack([[cv2.GaussianBlur(f, (0, 0), strength) for f in clip] for clip in arr])
        return torch.from_numpy(out).permute(0, 1, 4, 2, 3).contiguous()
    if kind == "shuffle":
        t = clips.shape[1]
        k = max(2, int(round(strength * t)))
        out = clips.clone()
        for i in range(clips.shape[0]):
            idx = torch.randperm(t, generator=gen)[:k].sort().values
            out[i, idx] = clips[i, idx[torch.randperm(k, generator=gen)]]
        return out
    raise ValueError(f"unknown corruption {kind!r}")


def _r2(pred: np.ndarray, target: np.ndarray) -> float:
    var = float(((target - target.mean()) ** 2).sum())
    return 1.0 - float(((pred - target) ** 2).sum()) / var if var > 0 else float("nan")


def validate_attributes(model: nn.Module, data: AttrWindows, max_windows: int = 256) -> dict[str, Any]:
    """Probe R2 / accuracy on held-out windows, and FVD-synth of corrupted against clean clips. The two
    sides are alternate windows of the same held-out scenes, so the uncorrupted distance is only sampling
    noise and a corruption's effect is not buried under a difference between scenes."""
    from drivesim.metrics.nets.train import attr_targets
    from drivesim.metrics.synth_frechet import FVDSynth

    picks = np.linspace(0, len(data) - 1, min(max_windows, len(data))).astype(int)
    clips = torch.stack([data.clip(int(i)) for i in picks])
    target = attr_targets(data, picks)
    with torch.no_grad():
        preds = [model(clips[i:i + 8]) for i in range(0, len(clips), 8)]
    pred = {k: torch.cat([p[k] for p in preds]) for k in preds[0]}
    out: dict[str, Any] = {f"r2_{n}": _r2(pred[n].numpy(), target[n].numpy()) for n in REGRESSION_HEADS}
    out.update({f"accuracy_{n}": float((pred[n].argmax(1) == target[n]).float().mean()) for n in LABEL_VOCAB})
    with torch.no_grad():
        shuffled = corrupt(clips, "shuffle", 0.5, seed=1)
        moved = (shuffled != clips).flatten(1).any(1)  # clips whose draw left every frame in place do not count
        logits = torch.cat([model(clips[i:i + 8])["order"] for i in range(0, len(clips), 8)] +
                           [model(shuffled[i:i + 8])["order"] for i in range(0, len(clips), 8)])
    truth = torch.cat([torch.zeros(len(clips), dtype=torch.bool), moved])
    keep = torch.cat([torch.ones(len(clips), dtype=torch.bool), moved])
    out["accuracy_order"] = float(((logits > 0) == truth)[keep].float().mean())
    half = len(clips) // 2
    reference, probe = clips[0:2 * half:2], clips[1:2 * half:2]
    sensitivity: dict[str, Any] = {}
    for kind, strengths in STRENGTHS.items():
        values = []
        for s in strengths:
            metric = FVDSynth(model)  # type: ignore[arg-type]
            metric.update(reference, real=True)
            metric.update(corrupt(probe, kind, s), real=False)
            values.append(float(metric.compute()))
        sensitivity[kind] = {"strengths": list(strengths), "fvd_synth": values,
                             "steady_rise": bool(np.all(np.diff(values) > 0))}
    out["sensitivity"] = sensitivity
    return out


def validate_layout(model: nn.Module, roots: list, min_box_px: int = 16) -> dict[str, Any]:
    from dataclasses import replace

    from drivesim.metrics.protocol import load_protocol
    from drivesim.metrics.real import real_from_data

    protocol = replace(load_protocol("synth-bench-v1"), clip_frames=8, stride=2.0, split=None, max_clips=None)
    boxes = found = 0
    halluc = []
    for root in roots:
        videos, _ = real_from_data({"name": "synthetic", "root": str(root), "version": "v1.0-synth"}, protocol)
        for v in videos:
            s = score_frames(model.predict(v.frames), v.conditions, min_box_px)  # type: ignore[operator,arg-type]
            boxes, found = boxes + int(s.boxes.sum()), found + int(s.found.sum())
            halluc.append(s.hallucinated)
    recall = found / boxes if boxes else float("nan")
    return {"recall": recall, "boxes": boxes, "hallucinated_area": float(np.concatenate(halluc).mean()),
            "min_box_px": min_box_px, "meets_min_recall": bool(recall >= MIN_REAL_RECALL)}


def validate(model: nn.Module, recipe: Any) -> dict[str, Any]:
    roots = render_seeds(recipe.work / "data", recipe.val_seeds, recipe.scenes, recipe.seconds)
    if recipe.kind == "layout":
        figures = validate_layout(model, roots)
        figures["bars_met"] = figures["meets_min_recall"]
    else:
        figures = validate_attributes(model, AttrWindows(scenes_of(roots)))
        figures["bars_met"] = all(v["steady_rise"] for v in figures["sensitivity"].values())
    log.info("validation of %s: %s", recipe.kind, figures)
    return figures
