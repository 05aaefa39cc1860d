"""Schema of the evaluation protocol group (conf/protocol/): how real and generated clips are measured.

A protocol fixes everything that changes a published number: clip length, fps, stride, resize
policy, which frames were given as context and whether they count, the extractors' protocols, the
number of clips, the data split and, for the synthetic world, the held-out seeds. Every result of
`drivesim evaluate` carries the protocol it was measured under (benchmarks/protocols/README.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING


@dataclass
class SynthRenderConfig:
    """How the real side of a synthetic-world protocol is rendered: one `drivesim synth` run per seed."""

    scenes: int = 2
    seconds: float = 20.0
    width: int = 256
    height: int = 128


@dataclass
class ProtocolConfig:
    name: str = MISSING
    description: str = ""
    # Real data: synthetic | nuscenes | videos, and the split of it the protocol uses.
    dataset: str = MISSING
    split: str | None = "val"
    camera: str = "CAM_FRONT"
    # Clips: frames per clip, frame rate, seconds between clip starts (null: one clip length).
    clip_frames: int = 16
    fps: float = 12.0
    stride: float | None = None
    # Both sides are resized (shorter side, area) and centre-cropped to size = [H, W] before any metric.
    size: list[int] = field(default_factory=lambda: [128, 256])
    resize: str = "shorter-side area resize, centre crop"
    # Frames given to the model as context at the start of each generated clip; counted or not.
    context_frames: int = 0
    count_context: bool = False
    # Frame metrics (FID, FID-synth) take every k-th counted frame of each video, both sides: neighbouring
    # frames at 12 Hz are near duplicates, so this buys distinct samples for the same extractor time.
    fid_frame_stride: int = 1
    # At most this many clips per side (null: all); which ones is seeded by `seed`.
    max_clips: int | None = None
    seed: int = 0
    fid: str = "fid-inception-tf"
    fvd: str = "fvd-i3d-styleganv"
    # Synthetic world only: seeds never used to train drivesim's metric networks, and how to render them.
    held_out_seeds: list[int] = field(default_factory=list)
    render: SynthRenderConfig = field(default_factory=SynthRenderConfig)
    # Temporal closeness |log((gen + e) / (real + e))|: e for the warp error ([0, 1] intensity) and flow (px).
    warp_eps: float = 1e-3
    flow_eps: float = 0.05
    # Layout adherence counts boxes whose shorter side is at least this many pixels, on every k-th counted
    # frame of each video, both sides (the detector costs ~0.045 s a frame on 2 cores; boxes barely move in
    # a 12 Hz frame, so the stride keeps the boxes scored distinct for the same detector time).
    min_box_px: int = 16
    layout_frame_stride: int = 1
    # Drift: metrics per window of this many seconds of rollout.
    window_seconds: float = 2.0
