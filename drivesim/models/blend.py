"""The one alpha blender that merges a spatial output z with its temporal refinement z'.

Video LDM merges `alpha * z + (1 - alpha) * z'` with `alpha = sigmoid(learned scalar)`; image-only
samples force alpha to 1 so they see exactly the image model. Written here rather than reusing
diffusers' `AlphaBlender`, whose `learned_with_images` mode needs 3-D/5-D tensors and whose
`switch_spatial_to_temporal_mix` image path returns the temporal branch (DESIGN.md section 3).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class AlphaBlender(nn.Module):
    """`alpha * spatial + (1 - alpha) * temporal` over folded frames `(b t) ...`.

    `init_logit` 0.5 (alpha about 0.62, as SVD starts) keeps the temporal path trainable from step 0.
    """

    def __init__(self, init_logit: float = 0.5) -> None:
        super().__init__()
        self.mix_logit = nn.Parameter(torch.tensor(float(init_logit)))

    def alpha(self, image_only: Tensor | None, num_frames: int, ndim: int) -> Tensor:
        """Alpha broadcastable to a folded `(B*T, ...)` tensor of `ndim` dims.

        `image_only` is None (no image-only samples) or a `(B,)` bool tensor.
        """
        alpha = torch.sigmoid(self.mix_logit)
        if image_only is None:
            return alpha
        per_frame = image_only.to(torch.bool).repeat_interleave(num_frames)
        alpha = torch.where(per_frame, torch.ones_like(alpha), alpha)
        return alpha.reshape(-1, *([1] * (ndim - 1)))

    def forward(self, spatial: Tensor, temporal: Tensor, num_frames: int,
                image_only: Tensor | None = None) -> Tensor:
        alpha = self.alpha(image_only, num_frames, spatial.ndim).to(spatial.dtype)
        return alpha * spatial + (1.0 - alpha) * temporal

    def residual(self, spatial: Tensor, update: Tensor, num_frames: int,
                 image_only: Tensor | None = None) -> Tensor:
        """`forward(spatial, spatial + update)` for a residual temporal branch `z' = z + g(z)`,
        computed as `z + (1 - alpha) * g` in one fused pass (same maths, fewer full-size tensors)."""
        alpha = self.alpha(image_only, num_frames, spatial.ndim).to(spatial.dtype)
        return torch.addcmul(spatial, 1.0 - alpha, update)

