"""The alpha blender's semantics: alpha weights the spatial path; image-only forces alpha = 1."""

from __future__ import annotations

import torch

from drivesim.models.blend import AlphaBlender


def test_blend_is_sigmoid_weighted_mix() -> None:
    blender = AlphaBlender(init_logit=0.5)
    z, z_t = torch.randn(6, 3, 4, 4), torch.randn(6, 3, 4, 4)
    alpha = torch.sigmoid(torch.tensor(0.5))
    torch.testing.assert_close(blender(z, z_t, num_frames=3), alpha * z + (1 - alpha) * z_t)


def test_image_only_samples_return_the_spatial_path_exactly() -> None:
    blender = AlphaBlender(init_logit=-2.0)
    z, z_t = torch.randn(6, 5), torch.randn(6, 5)  # B=2, T=3 folded
    out = blender(z, z_t, num_frames=3, image_only=torch.tensor([True, False]))
    assert torch.equal(out[:3], z[:3])
    alpha = torch.sigmoid(torch.tensor(-2.0))
    torch.testing.assert_close(out[3:], alpha * z[3:] + (1 - alpha) * z_t[3:])


def test_alpha_is_learned() -> None:
    blender = AlphaBlender()
    z, z_t = torch.randn(4, 2), torch.randn(4, 2)
    blender(z, z_t, num_frames=2).sum().backward()
    assert blender.mix_logit.grad is not None and blender.mix_logit.grad.abs() > 0
