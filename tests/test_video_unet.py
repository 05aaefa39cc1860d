"""The inflated video UNet against diffusers' own image UNet (DESIGN.md section 3 invariants)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import UNet2DConditionModel
from torch import nn
from unet_fixtures import STYLES, tiny_unet, write_diffusers

from drivesim.models import ConditionResiduals, VideoCondition, VideoUNet

B, T, H, W, L = 2, 3, 8, 16, 5


@pytest.fixture(scope="module", params=["sd1", "sd2"])
def saved(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    folder = tmp_path_factory.mktemp(request.param)
    write_diffusers(tiny_unet(request.param), folder)
    return request.param, folder


def _reference(folder: Path) -> UNet2DConditionModel:
    return UNet2DConditionModel.from_pretrained(folder, local_files_only=True).eval()


def _inputs(style: str, per_frame_t: bool, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, 4, H, W, generator=g)
    t = torch.randint(0, 1000, (B, T) if per_frame_t else (B,), generator=g)
    text = torch.randn(B, L, STYLES[style]["cross_attention_dim"], generator=g)
    return x, t, text


@torch.no_grad()
def _per_frame(ref: UNet2DConditionModel, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    frames = []
    for f in range(x.shape[1]):
        t_f = t[:, f] if t.ndim == 2 else t
        text_f = text[:, f] if text.ndim == 4 else text
        frames.append(ref(x[:, f], t_f, text_f).sample)
    return torch.stack(frames, dim=1)


def _perturb_temporal(model: VideoUNet, seed: int = 3) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("temporal_"):
                p.add_(0.2 * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("per_frame_t", [False, True], ids=["t(B)", "t(B,T)"])
def test_fresh_video_unet_equals_image_unet_per_frame(saved: tuple[str, Path], per_frame_t: bool) -> None:
    style, folder = saved
    model = VideoUNet.from_pretrained_image(folder).eval()
    x, t, text = _inputs(style, per_frame_t)
    with torch.no_grad():
        out = model(x, t, VideoCondition(text=text))
    assert out.shape == (B, T, 4, H, W)
    assert (out - _per_frame(_reference(folder), x, t, text)).abs().max() <= 1e-5


def test_per_frame_text_goes_to_each_frame(saved: tuple[str, Path]) -> None:
    style, folder = saved
    model = VideoUNet.from_pretrained_image(folder).eval()
    x, t, _ = _inputs(style, True)
    text = torch.randn(B, T, L, STYLES[style]["cross_attention_dim"])
    with torch.no_grad():
        out = model(x, t, VideoCondition(text=text))
    assert (out - _per_frame(_reference(folder), x, t, text)).abs().max() <= 1e-5


def test_absent_text_is_one_zero_token(saved: tuple[str, Path]) -> None:
    style, folder = saved
    model = VideoUNet.from_pretrained_image(folder).eval()
    x, t, _ = _inputs(style, False)
    null = torch.zeros(B, 1, STYLES[style]["cross_attention_dim"])
    with torch.no_grad():
        out = model(x, t, None)
    assert (out - _per_frame(_reference(folder), x, t, null)).abs().max() <= 1e-5


def test_temporal_layers_act_and_image_only_restores_the_image_model(saved: tuple[str, Path]) -> None:
    style, folder = saved
    model = VideoUNet.from_pretrained_image(folder).eval()
    _perturb_temporal(model)
    x, t, text = _inputs(style, True)
    expected = _per_frame(_reference(folder), x, t, text)
    with torch.no_grad():
        video = model(x, t, VideoCondition(text=text))
        image = model(x, t, VideoCondition(text=text, image_only=True))
        mixed = model(x, t, VideoCondition(text=text, image_only=torch.tensor([True, False])))
    assert (video - expected).abs().max() > 1e-2
    assert (image - expected).abs().max() <= 1e-5
    assert (mixed[0] - expected[0]).abs().max() <= 1e-5  # image-only sample: the image model exactly
    torch.testing.assert_close(mixed[1], video[1], atol=1e-5, rtol=1e-5)  # video sample: unchanged


def test_temporal_layers_mix_frames() -> None:
    """Changing one frame changes the others only through the temporal layers."""
    model = VideoUNet.from_image_unet(tiny_unet("sd1")).eval()
    _perturb_temporal(model)
    x, t, text = _inputs("sd1", False)
    y = x.clone()
    y[:, 0] += 1.0
    with torch.no_grad():
        a, b = model(x, t, VideoCondition(text=text)), model(y, t, VideoCondition(text=text))
        a0, b0 = (model(v, t, VideoCondition(text=text, image_only=True)) for v in (x, y))
    assert (a[:, 1:] - b[:, 1:]).abs().max() > 1e-3
    assert torch.equal(a0[:, 1:], b0[:, 1:])


def test_state_dict_holds_every_source_key_unchanged() -> None:
    unet = tiny_unet("sd2")
    source = {k: v.clone() for k, v in unet.state_dict().items()}
    model = VideoUNet.from_image_unet(unet)
    state = model.state_dict()
    assert set(source) <= set(state)
    assert all(torch.equal(state[k], v) for k, v in source.items())
    groups = model.weight_groups()
    assert set(groups["spatial"]) == set(source)
    assert set(state) - set(source) == set(groups["temporal"]) | set(groups["condition"])
    assert groups["temporal"] and all(k.startswith("temporal_") for k in groups["temporal"])
    # The spatial modules are the source objects, under the source names.
    assert model.down_blocks is unet.down_blocks and model.conv_in is unet.conv_in


def test_freeze_spatial_trains_only_the_temporal_layers() -> None:
    model = VideoUNet.from_image_unet(tiny_unet("sd1"))
    model.freeze_spatial()
    x, t, text = _inputs("sd1", False)
    model(x, t, VideoCondition(text=text)).square().mean().backward()
    groups = model.weight_groups()
    params = dict(model.named_parameters())
    assert all(params[k].grad is None for k in groups["spatial"] if k in params)
    # Zero-init last layers get gradients from step 0, so the temporal path can learn.
    assert params["temporal_down_convs.0.0.conv2.weight"].grad.abs().sum() > 0
    assert params["temporal_down_attns.0.0.to_out.weight"].grad.abs().sum() > 0


class _FixedResiduals(nn.Module):
    """Condition encoders stand-in that hands back fixed residuals (tests the hook, not an encoder)."""

    def __init__(self, residuals: ConditionResiduals) -> None:
        super().__init__()
        self.residuals = residuals
        self.scale = nn.Parameter(torch.ones(()))
        self.calls: list[dict[str, int]] = []

    def forward(self, cond: VideoCondition, *, batch: int, frames: int, height: int, width: int) -> ConditionResiduals:
        self.calls.append(dict(batch=batch, frames=frames, height=height, width=width))
        return self.residuals


def test_condition_residuals_enter_where_diffusers_adds_intrablock_residuals() -> None:
    unet = tiny_unet("sd1")
    ref = tiny_unet("sd1")
    x, t, text = _inputs("sd1", False)
    r0 = torch.randn(B * T, 32, H, W)
    encoders = _FixedResiduals(ConditionResiduals(down_blocks=[r0, None]))
    model = VideoUNet.from_image_unet(unet, condition_encoders=encoders).eval()
    with torch.no_grad():
        out = model(x, t, VideoCondition(text=text))
        expected = torch.stack([ref(x[:, f], t, text, down_intrablock_additional_residuals=[
            r0.view(B, T, 32, H, W)[:, f]]).sample for f in range(T)], dim=1)
    assert encoders.calls == [dict(batch=B, frames=T, height=H, width=W)]
    assert (out - expected).abs().max() <= 1e-5
    assert "condition_encoders.scale" in model.weight_groups()["condition"]


def test_zero_condition_residuals_change_nothing_and_bad_shapes_are_named() -> None:
    x, t, text = _inputs("sd1", False)
    zeros = ConditionResiduals(conv_in=torch.zeros(B * T, 32, H, W), time_emb=torch.zeros(B * T, 128),
                               down_blocks=[torch.zeros(B * T, 32, H, W), torch.zeros(B * T, 64, H // 2, W // 2)])
    model = VideoUNet.from_image_unet(tiny_unet("sd1"), condition_encoders=_FixedResiduals(zeros)).eval()
    with torch.no_grad():
        out = model(x, t, VideoCondition(text=text))
        assert (out - _per_frame(tiny_unet("sd1"), x, t, text)).abs().max() <= 1e-5
        model.condition_encoders.residuals = ConditionResiduals(time_emb=torch.zeros(B * T, 7))
        with pytest.raises(ValueError, match="time_emb"):
            model(x, t, VideoCondition(text=text))


def test_extra_input_channels_enter_through_a_zero_init_conv() -> None:
    model = VideoUNet.from_image_unet(tiny_unet("sd1"), extra_in_channels=3).eval()
    x, t, text = _inputs("sd1", False)
    extra = {"low_res": torch.randn(B, T, 3, H, W)}
    with torch.no_grad():
        plain = model(x, t, VideoCondition(text=text))
        assert torch.equal(model(x, t, VideoCondition(text=text, extra=extra)), plain)
        model.condition_extra_in.weight.normal_()  # type: ignore[union-attr]
        assert (model(x, t, VideoCondition(text=text, extra=extra)) - plain).abs().max() > 1e-3
        with pytest.raises(ValueError, match="extra"):
            model(x, t, VideoCondition(text=text, extra={"low_res": torch.randn(B, T, 2, H, W)}))
    assert "condition_extra_in.weight" in model.weight_groups()["condition"]


def test_bad_inputs_are_clear_errors() -> None:
    model = VideoUNet.from_image_unet(tiny_unet("sd1")).eval()
    x, t, text = _inputs("sd1", False)
    with pytest.raises(ValueError, match="sample must be"):
        model(x[:, 0], t, VideoCondition(text=text))
    with pytest.raises(ValueError, match="timesteps"):
        model(x, torch.zeros(B, T + 1), VideoCondition(text=text))
    with pytest.raises(ValueError, match="cross_attention_dim"):
        model(x, t, VideoCondition(text=torch.randn(B, L, 7)))
    with pytest.raises(ValueError, match="image_only"):
        model(x, t, VideoCondition(text=text, image_only=torch.tensor([True, False, True])))
    with pytest.raises(ValueError, match="extra"):
        model(x, t, VideoCondition(text=text, extra={"low_res": x}))


@pytest.mark.parametrize("overrides, message", [
    (dict(num_class_embeds=4), "num_class_embeds"),
    (dict(class_embed_type="timestep"), "class_embed_type"),
    (dict(time_cond_proj_dim=8), "time_cond_proj_dim"),
    (dict(addition_embed_type="text", encoder_hid_dim=32), "addition_embed_type"),
    (dict(attention_type="gated"), "attention_type"),
    (dict(down_block_types=("AttnDownBlock2D", "DownBlock2D")), "down block 0"),
    (dict(up_block_types=("UpBlock2D", "AttnUpBlock2D")), "up block 1"),
    (dict(mid_block_type="UNetMidBlock2D"), "mid block"),
    (dict(dual_cross_attention=True), "dual_cross_attention"),
    (dict(encoder_hid_dim=16), "encoder_hid_dim"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_unsupported_unet_features_fail_at_construction(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        VideoUNet.from_image_unet(tiny_unet("sd1", **overrides))


def test_not_a_unet_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="UNet2DConditionModel"):
        VideoUNet(nn.Linear(2, 2))  # type: ignore[arg-type]


def test_gradient_checkpointing_gives_the_same_gradients() -> None:
    model = VideoUNet.from_image_unet(tiny_unet("sd1"))
    _perturb_temporal(model)
    x, t, text = _inputs("sd1", True)

    def grads() -> dict[str, torch.Tensor]:
        model.zero_grad()
        model(x, t, VideoCondition(text=text)).square().mean().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain = grads()
    model.enable_gradient_checkpointing()
    checkpointed = grads()
    assert plain.keys() == checkpointed.keys()
    for name, grad in plain.items():
        torch.testing.assert_close(checkpointed[name], grad, atol=1e-5, rtol=1e-4)


def test_spatial_backbone_exports_back_to_an_image_unet() -> None:
    model = VideoUNet.from_image_unet(tiny_unet("sd2")).eval()
    _perturb_temporal(model)
    with torch.no_grad():
        for p in model.down_blocks.parameters():  # e.g. an image-stage / DreamBooth update
            p.add_(0.01)
    image = model.to_image_unet().eval()
    x, t, text = _inputs("sd2", True)
    with torch.no_grad():
        expected = model(x, t, VideoCondition(text=text, image_only=True))
    assert (_per_frame(image, x, t, text) - expected).abs().max() <= 1e-5
    assert set(image.state_dict()) == set(model.weight_groups()["spatial"])
