"""conf/model/*: micro and tiny build and run on CPU; sd15/sd21 are the real shapes (meta device)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from unet_fixtures import tiny_unet, write_diffusers

from drivesim.config.compose import compose_command
from drivesim.models import VideoCondition, build_video_unet


def _model_cfg(name: str, *overrides: str):  # type: ignore[no-untyped-def]
    return compose_command("train", [f"model={name}", *overrides]).model


def _count(model: torch.nn.Module, keys: list[str]) -> int:
    state = model.state_dict()
    return sum(state[k].numel() for k in keys)


@pytest.mark.parametrize("name", ["micro", "tiny"])
def test_small_configs_build_and_run(name: str) -> None:
    cfg = _model_cfg(name)
    model = build_video_unet(cfg).eval()
    x = torch.randn(1, cfg.num_frames, cfg.latent_channels, *cfg.latent_size)
    text = torch.randn(1, 77, model.cross_attention_dim)
    with torch.no_grad():
        out = model(x, torch.tensor([999]), VideoCondition(text=text))
    assert out.shape == x.shape
    if name == "micro":
        assert sum(p.numel() for p in model.parameters()) <= 500_000


@pytest.mark.parametrize("name, spatial", [("sd15", 859_520_964), ("sd21", 865_910_724)])
def test_sd_configs_have_the_real_shapes(name: str, spatial: int) -> None:
    cfg = _model_cfg(name)
    with torch.device("meta"):
        model = build_video_unet(cfg)
        x = torch.empty(1, 2, 4, 64, 64)
        out = model(x, torch.tensor([10]), VideoCondition(text=torch.empty(1, 77, model.cross_attention_dim)))
    groups = model.weight_groups()
    assert _count(model, groups["spatial"]) == spatial  # the published SD UNet parameter counts
    assert 0 < _count(model, groups["temporal"]) < 0.25 * spatial
    assert out.shape == (1, 2, 4, 64, 64)
    state = model.state_dict()
    assert state["down_blocks.0.attentions.0.proj_in.weight"].ndim == (2 if name == "sd21" else 4)
    assert state["down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight"].shape[1] == (
        1024 if name == "sd21" else 768)


def test_pretrained_path_is_loaded_and_checked_against_the_config(tmp_path: Path) -> None:
    write_diffusers(tiny_unet("sd1", seed=2), tmp_path / "unet")
    cfg = OmegaConf.to_container(_model_cfg("micro", f"model.pretrained={tmp_path / 'unet'}"))
    ok = build_video_unet({**cfg, "unet": {"cross_attention_dim": 32}})  # type: ignore[dict-item]
    assert ok.block_out_channels == (32, 64)
    with pytest.raises(ValueError, match="model micro: unet.block_out_channels"):
        build_video_unet(_model_cfg("micro", f"model.pretrained={tmp_path / 'unet'}"))


def test_unknown_unet_field_is_named() -> None:
    with pytest.raises(ValueError, match="model micro: bad `unet` field"):
        build_video_unet(_model_cfg("micro", "+model.unet.block_out_chanels=[8]"))


def test_conditioning_field_attaches_the_condition_encoders() -> None:
    cfg = OmegaConf.to_container(_model_cfg("micro"))
    assert isinstance(cfg, dict)
    cfg["conditioning"] = {"boxes": False}
    torch.manual_seed(0)
    model = build_video_unet(cfg).eval()
    assert model.weight_groups()["condition"]
    plain = build_video_unet({**cfg, "conditioning": None}).eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("condition_")})
    x, t = torch.randn(1, 4, 4, 8, 16), torch.tensor([300])
    text = torch.randn(1, 5, model.cross_attention_dim)
    cond = VideoCondition(text=text, context_latents=torch.randn_like(x), context_mask=torch.tensor([[1., 0, 0, 0]]))
    with torch.no_grad():  # encoders start at zero: attaching them changes nothing
        assert (model(x, t, cond) - plain(x, t, VideoCondition(text=text))).abs().max() <= 1e-6
    with pytest.raises(ValueError, match="model micro: bad `conditioning` field"):
        build_video_unet({**cfg, "conditioning": {"bogus": 1}})
