"""The temporal layers themselves: what they mix, where they start, and how they are blended."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange

from drivesim.models.folding import fold_frames, frames_to_sequences, sequences_to_frames, unfold_frames
from drivesim.models.temporal import TemporalAttentionBlock, TemporalConvBlock, frame_position_encoding


def _randomise(block: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g))


def test_temporal_conv_is_a_3x1x1_conv3d_over_each_sample_frames() -> None:
    block = TemporalConvBlock(16, groups=4)
    _randomise(block)
    x = torch.randn(2 * 5, 16, 3, 4)
    v = rearrange(x, "(b t) c h w -> b c t h w", t=5)
    g = block.conv2(F.silu(block.norm2(block.conv1(F.silu(block.norm1(v))))))  # the Conv3d modules on 5-D
    expected = block.blend(x, x + rearrange(g, "b c t h w -> (b t) c h w"), 5)
    torch.testing.assert_close(block(x, 5), expected, atol=1e-5, rtol=1e-5)
    assert block.conv1.kernel_size == (3, 1, 1)


def test_temporal_attention_mixes_frames_at_one_pixel_only() -> None:
    block = TemporalAttentionBlock(16, num_heads=2)
    _randomise(block)
    x = torch.randn(2 * 4, 16, 3, 5)
    y = x.clone()
    y[1, :, 2, 3] += torch.randn(16)  # sample 0, frame 1, pixel (2, 3)
    diff = (block(y, 4) - block(x, 4)).abs().amax(dim=1)  # (B*T, H, W)
    changed = diff > 1e-6
    assert changed[:4, 2, 3].all()  # every frame of that sample, at that pixel
    changed[:4, 2, 3] = False
    assert not changed.any()  # no other pixel, no other sample


def test_temporal_attention_knows_frame_order() -> None:
    """Without the frame encoding attention would be permutation-equivariant over frames."""
    block = TemporalAttentionBlock(16, num_heads=2)
    _randomise(block)
    x = torch.randn(4, 16, 2, 2)
    perm = torch.tensor([2, 0, 3, 1])
    out_of_permuted = block(x[perm], 4)
    assert (out_of_permuted - block(x, 4)[perm]).abs().max() > 1e-4
    assert frame_position_encoding(4, 16).shape == (4, 16)
    torch.testing.assert_close(block._frame_encoding(70, x.new_empty(1, 1, 16)), frame_position_encoding(70, 16))


def test_fresh_blocks_are_identities_and_image_only_bypasses_trained_ones() -> None:
    x = torch.randn(3 * 4, 16, 3, 5)
    for block in (TemporalConvBlock(16, groups=4), TemporalAttentionBlock(16, num_heads=2)):
        torch.testing.assert_close(block(x, 4), x, atol=1e-6, rtol=0)  # zero-init last layer: z' = z
        _randomise(block)
        out = block(x, 4, image_only=torch.tensor([False, True, False]))
        assert torch.equal(out[4:8], x[4:8])
        assert (out[:4] - x[:4]).abs().max() > 1e-3


def test_folding_round_trips() -> None:
    x = torch.randn(2, 3, 4, 5, 6)
    assert torch.equal(unfold_frames(fold_frames(x), 3), x)
    folded = fold_frames(x)
    assert torch.equal(folded[4], x[1, 1])  # (b t) order: frames of a sample adjacent
    assert torch.equal(sequences_to_frames(frames_to_sequences(folded, 3), 2, 5, 6), folded)


def test_blender_residual_form_is_the_blend_of_z_and_z_plus_g() -> None:
    """`residual(z, g)` is `forward(z, z + g)` fused; image-only frames get exactly z, gradients reach alpha."""
    from drivesim.models.blend import AlphaBlender

    blender = AlphaBlender(init_logit=0.3)
    z, g = torch.randn(3 * 2, 4, 5, 5), torch.randn(3 * 2, 4, 5, 5)
    torch.testing.assert_close(blender.residual(z, g, 2), blender(z, z + g, 2), atol=1e-6, rtol=1e-6)
    mask = torch.tensor([False, True, False])
    out = blender.residual(z, g, 2, mask)
    torch.testing.assert_close(out, blender(z, z + g, 2, mask), atol=1e-6, rtol=1e-6)
    assert torch.equal(out[2:4], z[2:4])
    blender.residual(z, g, 2, mask).sum().backward()
    assert blender.mix_logit.grad is not None and blender.mix_logit.grad.abs() > 0


def test_heads_that_do_not_divide_the_channels_split_like_the_spatial_transformer() -> None:
    block = TemporalAttentionBlock(32, num_heads=5)  # diffusers: 5 heads of 32 // 5 = 6 dims
    assert block.to_qkv.out_features == 3 * 30 and block.to_out.in_features == 30
    _randomise(block)
    x = torch.randn(2 * 3, 32, 2, 2)
    assert block(x, 3).shape == x.shape


def test_conv_block_with_time_embedding_starts_as_identity_and_reads_each_frame_embedding() -> None:
    block = TemporalConvBlock(16, groups=4, emb_channels=8)
    x, emb = torch.randn(2 * 3, 16, 2, 2), torch.randn(2 * 3, 8)
    torch.testing.assert_close(block(x, 3, emb=emb), x, atol=1e-6, rtol=0)  # conv2 zero-init: still z' = z
    _randomise(block)
    changed = emb.clone()
    changed[4] += 1.0  # sample 1, frame 1
    diff = (block(x, 3, emb=changed) - block(x, 3, emb=emb)).abs().amax(dim=(1, 2, 3))
    assert (diff[:3] == 0).all()  # the other sample is untouched
    assert (diff[3:] > 1e-4).all()  # frame 1's embedding reaches its neighbours through conv2
    with pytest.raises(ValueError, match="per-frame embedding"):
        block(x, 3)
