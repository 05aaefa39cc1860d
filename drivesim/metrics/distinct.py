"""Identical frames are scored once.

A held or frozen video (the copy-last-frame baseline, a generator that stalls) repeats one frame
hundreds of times; the per-frame networks (the FID Inception, the layout net) are deterministic per
frame, so each distinct frame is run once and its output copied to its repeats. Videos without repeats
run in exactly the batches they ran in before; with repeats the batches differ, which changes an output
by float round-off at most.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import torch
from torch import Tensor


def distinct_frames(frames: Tensor) -> tuple[list[int], Tensor]:
    """(indices of each distinct frame's first occurrence, index into them for every frame (N,))."""
    seen: dict[bytes, int] = {}
    first: list[int] = []
    inverse: list[int] = []
    for i, frame in enumerate(frames.detach().cpu()):
        digest = hashlib.blake2b(frame.contiguous().numpy().tobytes(), digest_size=16).digest()
        k = seen.setdefault(digest, len(first))
        if k == len(first):
            first.append(i)
        inverse.append(k)
    return first, torch.tensor(inverse, dtype=torch.long)


def per_distinct_frame(frames: Tensor, run: Callable[[Tensor], Tensor], batch_size: int) -> Tensor:
    """`run` over `frames` (N, ...) in batches of `batch_size`, each distinct frame once; outputs in frame order."""
    if frames.shape[0] == 0:
        raise ValueError("per_distinct_frame: no frames")
    first, inverse = distinct_frames(frames)
    distinct = frames if len(first) == frames.shape[0] else frames[first]
    out = torch.cat([run(distinct[s:s + batch_size]) for s in range(0, distinct.shape[0], batch_size)])
    return out if len(first) == frames.shape[0] else out[inverse.to(out.device)]
