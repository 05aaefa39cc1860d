"""The synthetic attribute encoder: a small video network predicting scene attributes from clips.

Heads: ego speed (m/s), ego yaw rate (rad/s), agent count (log1p), time of day, weather and
crowdedness (classes of `drivesim.vocab.LABEL_VOCAB` without "unknown"). Its per-frame pooled trunk
features give FID-synth, its penultimate clip features FVD-synth. Input uint8 (N, T, 3, H, W), T >= 3,
resized inside to `input_size`. Appearance (the trunk, one frame at a time) and motion (a branch on the
optical flow and the differences of consecutive frames at input resolution: ego speed lives in
pixel-scale displacements that the trunk's coarse grid would average away) meet in the temporal layers.

Why optical flow: a turn moves the far scene sideways by about a third of a pixel per frame at 64x128,
which frame differences do not show (v2's yaw head: held-out R2 0.18), while the median horizontal DIS
flow near the horizon alone explains 83% of the yaw rate's variance on held-out scenes (measured).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from drivesim.vocab import LABEL_VOCAB

LABEL_HEADS = {name: len(values) - 1 for name, values in LABEL_VOCAB.items()}
REGRESSION_HEADS = ("speed", "yaw_rate", "agents")
#: About 1 / the standard deviation of each regression target over the training windows (speed 3.45 m/s,
#: yaw rate 0.047 rad/s, log1p(agents) 0.44): at smaller scales the regression losses were ~20x weaker than
#: the label losses and the shared layers never learned motion (train R2 of speed 0.09 at step 2,100).
TARGET_SCALE = {"speed": 0.3, "yaw_rate": 20.0, "agents": 2.25}


@dataclass(frozen=True)
class AttrNetConfig:
    widths: tuple[int, int, int, int] = (16, 32, 64, 128)
    temporal_width: int = 128
    feature_dim: int = 256
    input_size: tuple[int, int] = (64, 128)
    motion_widths: tuple[int, int, int, int] = (8, 16, 32, 32)
    dropout: float = 0.1  # before the heads only: the features FVD-synth reads are unaffected
    motion_input: str = "flow+diff"  # "diff" (v2: frame differences only) or "flow+diff" (DIS flow beside them)

    def to_dict(self) -> dict:
        return asdict(self)


def _down(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.GroupNorm(min(8, cout), cout), nn.SiLU(),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(min(8, cout), cout), nn.SiLU())


MOTION_CHANNELS = {"diff": 3, "flow+diff": 5}


def consecutive_flow(x: torch.Tensor) -> torch.Tensor:
    """(N, T, 3, h, w) frames in [-1, 1] -> (N, T, 2, h, w) OpenCV DIS flow (medium preset, the temporal metric's)
    from each frame to the next, in pixels at this resolution; zero for the last frame. No gradient: an input."""
    gray = ((x.detach().mean(2) + 1.0) * 127.5).clamp(0, 255).round().to(torch.uint8).cpu().numpy()
    engine = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)  # type: ignore[attr-defined]
    n, t, h, w = gray.shape
    flow = np.zeros((n, t, 2, h, w), np.float32)
    for i in range(n):
        for k in range(t - 1):
            flow[i, k] = engine.calc(gray[i, k], gray[i, k + 1], None).transpose(2, 0, 1)
    return torch.from_numpy(flow).to(x.device)


class AttributeEncoder(nn.Module):
    def __init__(self, config: AttrNetConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or AttrNetConfig()
        w = c.widths
        self.trunk = nn.Sequential(_down(3, w[0]), *[_down(w[i], w[i + 1]) for i in range(len(w) - 1)])
        m = c.motion_widths
        if len(m) != len(w):
            raise ValueError(f"motion_widths {m} must have as many levels as widths {w}")
        if c.motion_input not in MOTION_CHANNELS:
            raise ValueError(f"motion_input must be one of {sorted(MOTION_CHANNELS)}, got {c.motion_input!r}")
        self.motion = nn.Sequential(_down(MOTION_CHANNELS[c.motion_input], m[0]), *[_down(m[i], m[i + 1]) for i in range(len(m) - 1)])
        self.temporal = nn.Sequential(
            nn.Conv3d(w[-1] + m[-1], c.temporal_width, (3, 3, 3), padding=1), nn.SiLU(),
            nn.Conv3d(c.temporal_width, c.temporal_width, (3, 3, 3), padding=1), nn.SiLU(),
        )
        self.penultimate = nn.Sequential(nn.Linear(c.temporal_width, c.feature_dim), nn.SiLU())
        self.head_dropout = nn.Dropout(c.dropout)
        self.regression = nn.Linear(c.feature_dim, len(REGRESSION_HEADS))
        self.labels = nn.ModuleDict({name: nn.Linear(c.feature_dim, n) for name, n in LABEL_HEADS.items()})
        # Temporal coherence: is the clip in its true frame order? Trained on partly shuffled copies, it makes
        # the FVD-synth features register broken motion (attribute heads alone left them blind to it).
        self.order = nn.Linear(c.feature_dim, 1)

    def _prepare(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.to(torch.float32) / 127.5 - 1.0
        return F.interpolate(x, size=tuple(self.config.input_size), mode="area")

    def _frames(self, videos: torch.Tensor) -> torch.Tensor:
        if videos.dtype != torch.uint8 or videos.ndim != 5 or videos.shape[2] != 3 or videos.shape[1] < 3:
            raise ValueError(f"videos must be uint8 (N, T >= 3, 3, H, W), got {videos.dtype} {tuple(videos.shape)}")
        return self._prepare(videos.flatten(0, 1))

    def trunk_maps(self, videos: torch.Tensor) -> torch.Tensor:
        """(N, C + M, T, h, w): trunk features of every frame beside motion features of its flow and difference
        to the next frame (zero for the last), so the temporal layers see both appearance and motion."""
        n, t = videos.shape[:2]
        x = self._frames(videos).unflatten(0, (n, t))
        diff = torch.cat([x[:, 1:] - x[:, :-1], torch.zeros_like(x[:, :1])], 1)
        if self.config.motion_input == "flow+diff":
            diff = torch.cat([consecutive_flow(x), diff], 2)
        maps = self.trunk(x.flatten(0, 1))
        motion = self.motion(diff.flatten(0, 1))
        return torch.cat([maps, motion], 1).unflatten(0, (n, t)).permute(0, 2, 1, 3, 4)

    def frame_features(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, H, W) -> (N, C) pooled trunk features (FID-synth)."""
        if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"frames must be uint8 (N, 3, H, W), got {frames.dtype} {tuple(frames.shape)}")
        return self.trunk(self._prepare(frames)).mean((-2, -1))

    def clip_features(self, videos: torch.Tensor) -> torch.Tensor:
        """(N, feature_dim) penultimate clip features (FVD-synth)."""
        pooled = self.temporal(self.trunk_maps(videos)).mean((-3, -2, -1))
        return self.penultimate(pooled)

    def forward(self, videos: torch.Tensor) -> dict[str, torch.Tensor]:
        """Predictions: "speed", "yaw_rate", "agents" (N,) in target units; label logits (N, classes);
        "order" (N,): logit that the frames are out of order."""
        h = self.head_dropout(self.clip_features(videos))
        reg = self.regression(h)
        out = {name: reg[:, i] / TARGET_SCALE[name] for i, name in enumerate(REGRESSION_HEADS)}
        out.update({name: head(h) for name, head in self.labels.items()})
        out["order"] = self.order(h)[:, 0]
        return out


def build_attrnet(config: dict) -> AttributeEncoder:
    """The network of a saved config dict (the weights file's metadata)."""
    d = AttrNetConfig()
    return AttributeEncoder(AttrNetConfig(
        widths=tuple(config.get("widths", d.widths)),  # type: ignore[arg-type]
        temporal_width=int(config.get("temporal_width", d.temporal_width)),
        feature_dim=int(config.get("feature_dim", d.feature_dim)),
        input_size=tuple(config.get("input_size", d.input_size)),  # type: ignore[arg-type]
        motion_widths=tuple(config.get("motion_widths", d.motion_widths)),  # type: ignore[arg-type]
        dropout=float(config.get("dropout", d.dropout)),
        motion_input=str(config.get("motion_input", "diff")),  # configs saved before the key existed: v2, diff only
    ))
