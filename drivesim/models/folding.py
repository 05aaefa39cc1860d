"""The one place where video tensors change layout (DESIGN.md section 3, tensor layout).

Spatial layers see frames folded into the batch, `(b t) c h w`; temporal layers see time as its own
axis. Every reshuffle goes through these einops patterns so the `(b t)` order is written down once.
"""

from __future__ import annotations

from einops import rearrange, repeat
from torch import Tensor


def fold_frames(x: Tensor) -> Tensor:
    """`(B, T, ...)` -> `(B*T, ...)`, frames of one sample adjacent."""
    return rearrange(x, "b t ... -> (b t) ...")


def unfold_frames(x: Tensor, num_frames: int) -> Tensor:
    """`(B*T, ...)` -> `(B, T, ...)`; the inverse of `fold_frames`."""
    return rearrange(x, "(b t) ... -> b t ...", t=num_frames)


def repeat_per_frame(x: Tensor, num_frames: int) -> Tensor:
    """`(B, ...)` -> `(B*T, ...)`: one value shared by every frame of its sample."""
    return repeat(x, "b ... -> (b t) ...", t=num_frames)


def frames_to_volume(x: Tensor, num_frames: int) -> Tensor:
    """Folded `(B*T, C, H, W)` -> `(B, C, T, H*W)`: a video volume with the pixels flattened, so
    convolutions over time run as 2D convolutions (kernel `(k, 1)`), oneDNN's fast path on CPU."""
    return rearrange(x, "(b t) c h w -> b c t (h w)", t=num_frames)


def volume_to_frames(x: Tensor, height: int) -> Tensor:
    """`(B, C, T, H*W)` -> folded `(B*T, C, H, W)`; the inverse of `frames_to_volume`."""
    return rearrange(x, "b c t (h w) -> (b t) c h w", h=height)


def frames_to_sequences(x: Tensor, num_frames: int) -> Tensor:
    """Folded `(B*T, C, H, W)` -> `(B*H*W, T, C)`: one sequence over time per pixel."""
    return rearrange(x, "(b t) c h w -> (b h w) t c", t=num_frames)


def sequences_to_frames(x: Tensor, batch: int, height: int, width: int) -> Tensor:
    """`(B*H*W, T, C)` -> folded `(B*T, C, H, W)`; the inverse of `frames_to_sequences`."""
    return rearrange(x, "(b h w) t c -> (b t) c h w", b=batch, h=height, w=width)
