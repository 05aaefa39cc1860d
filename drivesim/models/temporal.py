"""The temporal layers l_phi inserted after every spatial layer (Video LDM, DESIGN.md section 1).

Each is a residual branch `z' = z + g(z)` whose last layer starts at zero, merged with the spatial
output by the shared `AlphaBlender`; so at init, or with alpha forced to 1, the image model is intact.
Both work on folded frames `(B*T, C, H, W)` and take the frame count as an argument (no state).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import get_timestep_embedding
from einops import rearrange
from torch import Tensor, nn

from drivesim.models.blend import AlphaBlender
from drivesim.models.folding import (
    frames_to_sequences,
    frames_to_volume,
    sequences_to_frames,
    volume_to_frames,
)

# Temporal padding of the 3x1x1 convs: zeros (the video UNet, every export so far) or replicate (the
# temporal VAE decoder since session 13: with zeros, a clip's first and last frames - every chunk border
# of a long decode - see a black neighbour and come out different from the inner frames).
TEMPORAL_PADDINGS = ("zeros", "replicate")


class TemporalConvBlock(nn.Module):
    """GroupNorm -> SiLU -> Conv3d(3x1x1) [+ per-frame embedding] -> GroupNorm -> SiLU -> zero-init
    Conv3d(3x1x1), blended.

    Kernels span time only (3x1x1), so a frame mixes with its neighbours at the same pixel; the
    spatial receptive field stays the image model's. Norms take the resnet's groups and eps.
    With `emb_channels`, the UNet's per-frame embedding (diffusion time plus the frame embedding of
    labels, ego action, noise level) is projected and added after the first conv, as in diffusers'
    `TemporalResnetBlock`: ego speed is a temporal quantity (how far the scene moves between frames),
    and without this the temporal layers see it only through the frozen spatial features.
    """

    def __init__(self, channels: int, groups: int, eps: float = 1e-6, init_logit: float = 0.5,
                 emb_channels: int | None = None, padding: str = "zeros") -> None:
        super().__init__()
        if padding not in TEMPORAL_PADDINGS:
            raise ValueError(f"temporal padding {padding!r} must be one of {', '.join(TEMPORAL_PADDINGS)}")
        self.padding = padding
        self.norm1 = nn.GroupNorm(groups, channels, eps=eps)
        self.conv1 = nn.Conv3d(channels, channels, kernel_size=(3, 1, 1), padding=(1, 0, 0))
        # Standard init: conv2 starts at zero, so the block's output is still exactly zero at init.
        self.emb_proj = nn.Linear(emb_channels, channels) if emb_channels else None
        self.norm2 = nn.GroupNorm(groups, channels, eps=eps)
        self.conv2 = nn.Conv3d(channels, channels, kernel_size=(3, 1, 1), padding=(1, 0, 0))
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)  # type: ignore[arg-type]
        self.blend = AlphaBlender(init_logit)

    def forward(self, x: Tensor, num_frames: int, image_only: Tensor | None = None,
                emb: Tensor | None = None) -> Tensor:
        v = frames_to_volume(x, num_frames)  # (B, C, T, H*W): GroupNorm over a sample's frames
        h = _conv_over_time(self.conv1, F.silu(self.norm1(v)), self.padding)
        if self.emb_proj is not None:
            if emb is None or emb.shape[0] != x.shape[0]:
                raise ValueError(f"this temporal conv block reads the per-frame embedding: pass emb of shape "
                                 f"({x.shape[0]}, {self.emb_proj.in_features})")
            per_frame = self.emb_proj(F.silu(emb)).to(h.dtype)  # (B*T, C)
            h = h + rearrange(per_frame, "(b t) c -> b c t 1", t=num_frames)
        h = _conv_over_time(self.conv2, F.silu(self.norm2(h)), self.padding)
        return self.blend.residual(x, volume_to_frames(h, x.shape[-2]), num_frames, image_only)


def _conv_over_time(conv: nn.Conv3d, v: Tensor, padding: str = "zeros") -> Tensor:
    """The 3x1x1 Conv3d applied to `(B, C, T, H*W)` as the equal (3, 1) 2D conv: same weights and
    maths, but oneDNN runs it (torch falls back to a slow im2col Conv3d on CPU; 2x at small widths).
    `replicate` pads time with the first / last frame instead of zeros: a clip's end frames then see
    neighbours like its inner frames do, so a static clip stays static through the block."""
    if padding == "replicate":
        return F.conv2d(F.pad(v, (0, 0, 1, 1), mode="replicate"), conv.weight.squeeze(-1), conv.bias)
    return F.conv2d(v, conv.weight.squeeze(-1), conv.bias, padding=(1, 0))


def frame_position_encoding(num_frames: int, channels: int, device: torch.device | None = None,
                            dtype: torch.dtype = torch.float32) -> Tensor:
    """Sinusoidal encoding of the frame index, `(T, C)`; fixed, so any clip length works."""
    positions = torch.arange(num_frames, device=device)
    enc = get_timestep_embedding(positions, channels, flip_sin_to_cos=True, downscale_freq_shift=0)
    return enc.to(dtype)


class TemporalAttentionBlock(nn.Module):
    """Self-attention over the T frames at each pixel: LayerNorm + frame position -> qkv -> SDPA -> out.

    Only frames attend to frames (no text, no other pixels); the out projection starts at zero.
    """

    # Frame encodings up to this many frames are precomputed (a non-persistent buffer: not a weight).
    PRECOMPUTED_FRAMES = 64

    def __init__(self, channels: int, num_heads: int, init_logit: float = 0.5) -> None:
        super().__init__()
        if not 0 < num_heads <= channels:
            raise ValueError(f"temporal attention: {num_heads} heads for {channels} channels")
        # Heads of channels // num_heads dims, as the spatial transformer beside it splits them; when
        # the heads do not divide the channels (e.g. 32 channels, 5 heads) the inner width is smaller.
        self.num_heads = num_heads
        inner = num_heads * (channels // num_heads)
        self.norm = nn.LayerNorm(channels)
        self.to_qkv = nn.Linear(channels, 3 * inner, bias=False)
        self.to_out = nn.Linear(inner, channels)
        nn.init.zeros_(self.to_out.weight)
        nn.init.zeros_(self.to_out.bias)
        self.blend = AlphaBlender(init_logit)
        self.frame_encoding: Tensor
        self.register_buffer("frame_encoding", frame_position_encoding(self.PRECOMPUTED_FRAMES, channels),
                             persistent=False)

    def _frame_encoding(self, num_frames: int, like: Tensor) -> Tensor:
        table = self.frame_encoding
        if num_frames <= table.shape[0] and table.device == like.device:
            return table[:num_frames].to(like.dtype)
        return frame_position_encoding(num_frames, like.shape[-1], like.device, like.dtype)

    def forward(self, x: Tensor, num_frames: int, image_only: Tensor | None = None) -> Tensor:
        batch = x.shape[0] // num_frames
        height, width = x.shape[-2:]
        seq = frames_to_sequences(x, num_frames)
        h = self.norm(seq) + self._frame_encoding(num_frames, seq)
        q, k, v = rearrange(self.to_qkv(h), "n t (three heads d) -> three n heads t d", three=3,
                            heads=self.num_heads)
        h = rearrange(F.scaled_dot_product_attention(q, k, v), "n heads t d -> n t (heads d)")
        out = sequences_to_frames(self.to_out(h), batch, height, width)
        return self.blend.residual(x, out, num_frames, image_only)
