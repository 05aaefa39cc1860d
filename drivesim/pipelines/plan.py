"""The rollout as a list of chunks: which key frames each diffusion call makes and which output frames it finalises.

Key frames are indexed j; key j sits at output frame `factor * j + phase` (factor = 4 per interpolation
pass, 1 without). Without given context the image model makes key 0 = output frame 0 (phase 0).
With given context the given keys are j <= 0 and the last one sits just before output frame 0
(phase -1), so time 0 is the first generated frame. Every prediction chunk conditions on the last
`context` keys and makes `window - S` new ones; its output frames are those after the previous
chunk's last key up to its own last key (the interpolated frames between them included).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from drivesim.pipelines.errors import GenerateError


@dataclass(frozen=True)
class Chunk:
    index: int
    kind: str  # "image" | "predict"
    context_keys: tuple[int, ...]  # keys given to this call (oldest first)
    new_keys: tuple[int, ...]  # keys this call makes
    outputs: tuple[int, int]  # output frames [start, stop) it finalises


@dataclass(frozen=True)
class RolloutPlan:
    frames: int  # output frames N
    out_fps: float
    factor: int = 1  # output frames per key-frame interval
    given: int = 0  # given context keys (0: the image model makes the first key)
    window: int = 4  # frames of one prediction call
    context: int = 2  # context keys per prediction call

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise GenerateError(f"a rollout needs at least one output frame, got {self.frames}")
        if not 1 <= self.context < self.window:
            raise GenerateError(f"context frames ({self.context}) must lie in [1, {self.window - 1}] for a "
                             f"{self.window}-frame prediction model")

    @property
    def phase(self) -> int:
        return 0 if self.given == 0 else -1

    def key_output(self, j: int) -> int:
        return self.factor * j + self.phase

    def key_time(self, j: int) -> float:
        return self.key_output(j) / self.out_fps

    @property
    def last_key(self) -> int:
        """The first key at or after the last output frame."""
        return max(0 if self.given == 0 else 1, math.ceil((self.frames - 1 - self.phase) / self.factor))

    def chunks(self) -> list[Chunk]:
        out: list[Chunk] = []
        have = list(range(1 - self.given, 1)) if self.given else []
        if not self.given:
            out.append(Chunk(0, "image", (), (0,), (0, 1)))
            have = [0]
        while have[-1] < self.last_key:
            ctx = tuple(have[-self.context:])
            new = tuple(range(have[-1] + 1, have[-1] + 1 + self.window - len(ctx)))
            start = max(0, self.key_output(ctx[-1]) + 1)
            stop = min(self.frames, self.key_output(min(new[-1], self.last_key)) + 1)
            out.append(Chunk(len(out), "predict", ctx, new, (start, stop)))
            have = list(ctx) + list(new)
        return out
