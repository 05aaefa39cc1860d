"""Per-frame boxes -> a rendered layout at latent resolution -> a zero-init adapter (T2I-Adapter style).

Each box paints (class embedding + instance embedding) over the latent pixels it overlaps; the
adapter turns the layout into one residual per down block, at that block's resolution and width.
The adapter is bias-free with zero-init outputs, so an empty layout (no boxes, or all masked)
contributes exactly zero, and a box only changes features near itself (its receptive field).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from drivesim.models.conditioning.embeddings import zero_init


def box_coverage(boxes: Tensor, box_mask: Tensor, height: int, width: int) -> Tensor:
    """(M, N, 4) xyxy in [0, 1] and (M, N) bool -> (M, N, H, W) float, 1 where a pixel overlaps a box.

    A pixel counts when its cell overlaps the box at all, so a box smaller than one latent pixel
    still marks the cell it lies in. Vectorised over boxes and pixels.
    """
    dtype = boxes.dtype if boxes.is_floating_point() else torch.float32
    ys = torch.arange(height, device=boxes.device, dtype=dtype)
    xs = torch.arange(width, device=boxes.device, dtype=dtype)
    x0, y0, x1, y1 = (boxes[..., i : i + 1].to(dtype) for i in range(4))  # (M, N, 1)
    in_x = (xs / width < x1) & ((xs + 1) / width > x0) & (x1 > x0)  # (M, N, W)
    in_y = (ys / height < y1) & ((ys + 1) / height > y0) & (y1 > y0)  # (M, N, H)
    inside = in_y[..., :, None] & in_x[..., None, :] & box_mask.to(torch.bool)[..., None, None]
    return inside.to(dtype)


class BoxLayout(nn.Module):
    """Rasterise boxes into a (B*T, K, H, W) layout of class + instance-id embeddings."""

    def __init__(self, num_classes: int, max_instances: int, embed_dim: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.max_instances = max_instances
        self.class_embedding = nn.Embedding(num_classes, embed_dim)
        self.instance_embedding = nn.Embedding(max_instances, embed_dim)

    def forward(self, boxes: Tensor, classes: Tensor, instance_ids: Tensor | None, box_mask: Tensor,
                height: int, width: int) -> Tensor:
        """boxes (B, T, N, 4), classes / instance_ids / box_mask (B, T, N) -> (B*T, K, H, W)."""
        b, t, n, _ = boxes.shape
        mask = box_mask.reshape(b * t, n).to(torch.bool)
        cls = classes.reshape(b * t, n).long()
        bad = mask & ((cls < 0) | (cls >= self.num_classes))
        if bad.any():
            raise ValueError(f"box_classes must lie in [0, {self.num_classes}) for real boxes, "
                             f"got {cls[bad].unique().tolist()}")
        emb = self.class_embedding(cls.clamp(0, self.num_classes - 1))  # (M, N, K)
        if instance_ids is not None:
            ids = instance_ids.reshape(b * t, n).long().remainder(self.max_instances)
            emb = emb + self.instance_embedding(ids)
        cover = box_coverage(boxes.reshape(b * t, n, 4), mask, height, width).to(emb.dtype)
        return torch.einsum("mnhw,mnk->mkhw", cover, emb)


class BoxAdapter(nn.Module):
    """Layout -> one residual per down block i: (B*T, C_i, H / 2**i, W / 2**i), zero at init.

    A bias-free conv pyramid (stride-2 convs, k3 p1, matching diffusers' Downsample2D sizes) with a
    zero-init 1x1 output per level, like T2I-Adapter.
    """

    def __init__(self, in_channels: int, hidden: int, block_out_channels: tuple[int, ...]) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, hidden, 3, padding=1, bias=False)
        self.act = nn.SiLU()
        self.levels = nn.ModuleList()
        self.outputs = nn.ModuleList()
        for i, channels in enumerate(block_out_channels):
            stride = 1 if i == 0 else 2
            self.levels.append(nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, bias=False))
            self.outputs.append(zero_init(nn.Conv2d(hidden, channels, 1, bias=False)))

    def forward(self, layout: Tensor) -> list[Tensor]:
        x = self.act(self.conv_in(layout))
        residuals = []
        for level, out in zip(self.levels, self.outputs):
            x = self.act(level(x))
            residuals.append(out(x))
        return residuals


class BoxEncoder(nn.Module):
    """BoxLayout + BoxAdapter."""

    def __init__(self, num_classes: int, max_instances: int, embed_dim: int, hidden: int,
                 block_out_channels: tuple[int, ...]) -> None:
        super().__init__()
        self.layout = BoxLayout(num_classes, max_instances, embed_dim)
        self.adapter = BoxAdapter(embed_dim, hidden, block_out_channels)

    def forward(self, boxes: Tensor, classes: Tensor, instance_ids: Tensor | None, box_mask: Tensor,
                height: int, width: int) -> list[Tensor]:
        return self.adapter(self.layout(boxes, classes, instance_ids, box_mask, height, width))
