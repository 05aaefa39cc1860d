"""UNet2DConditionModel options that SD 1.x/2.x-family checkpoints use, each inflated and checked
against diffusers' own per-frame output (DESIGN.md section 3: any SD 1.x/2.x UNet inflates)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from diffusers import UNet2DConditionModel

from drivesim.models import VideoCondition, VideoUNet

BASE: dict[str, Any] = dict(
    sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8,
)
VARIANTS: dict[str, dict[str, Any]] = {
    "heads-not-dividing-channels": dict(attention_head_dim=5),
    "per-block-heads": dict(attention_head_dim=[2, 4]),
    "transformer-layers-list": dict(transformer_layers_per_block=[2, 1], layers_per_block=[1, 2]),
    "linear-upcast": dict(use_linear_projection=True, upcast_attention=True),
    "only-cross-attention": dict(only_cross_attention=True),
    "only-cross-attention-list": dict(only_cross_attention=[True, False], mid_block_only_cross_attention=True),
    "scale-shift": dict(resnet_time_scale_shift="scale_shift"),
    "time-embedding-act": dict(time_embedding_act_fn="silu", flip_sin_to_cos=False, freq_shift=1),
    "per-block-cross-attention-dim": dict(cross_attention_dim=[32, 32]),
    "no-mid-block-inpainting": dict(mid_block_type=None, in_channels=9, out_channels=8),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_inflates_to_the_image_model(name: str) -> None:
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**{**BASE, **VARIANTS[name]}).eval()
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.02 * torch.randn_like(p))
    reference = UNet2DConditionModel.from_config(unet.config).eval()
    reference.load_state_dict(unet.state_dict())
    model = VideoUNet.from_image_unet(unet).eval()
    b, t, c = 2, 2, unet.config.in_channels
    g = torch.Generator().manual_seed(1)
    x = torch.randn(b, t, c, 9, 15, generator=g)  # odd latent sizes: diffusers' forward_upsample_size path
    steps = torch.randint(0, 1000, (b, t), generator=g)
    text = torch.randn(b, t, 3, 32, generator=g)
    with torch.no_grad():
        out = model(x, steps, VideoCondition(text=text))
        expected = torch.stack([reference(x[:, f], steps[:, f], text[:, f]).sample for f in range(t)], dim=1)
        assert (out - expected).abs().max() <= 1e-5
        out_shared = model(x, steps[:, 0], VideoCondition(text=text[:, 0]))
        first = reference(x[:, 1], steps[:, 0], text[:, 0]).sample
        assert (out_shared[:, 1] - first).abs().max() <= 1e-5


def test_mixed_per_block_cross_attention_dims_fail_at_construction() -> None:
    unet = UNet2DConditionModel(**{**BASE, "cross_attention_dim": [32, 16]})
    with pytest.raises(ValueError, match="one cross_attention_dim"):
        VideoUNet.from_image_unet(unet)
