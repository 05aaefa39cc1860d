"""LoRA on a real VideoUNet: only spatial attention projections are wrapped; weights round-trip."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from peft.tuners.lora import LoraLayer
from unet_fixtures import tiny_unet

from drivesim.models.condition import VideoCondition
from drivesim.models.conditioning import ConditionEncoders, ConditionOptions
from drivesim.models.lora import (
    NEVER_TARGETS,
    SPATIAL_ATTENTION_TARGETS,
    LoraOptions,
    add_lora,
    load_lora,
    lora_module_names,
    merge_lora,
    save_lora,
)
from drivesim.models.video_unet import VideoUNet

PROJECTIONS = ("to_q", "to_k", "to_v", "to_out.0")


def video_unet(seed: int = 0) -> VideoUNet:
    unet = tiny_unet("sd1", seed=seed)
    encoders = ConditionEncoders.for_unet(unet, ConditionOptions())
    return VideoUNet.from_image_unet(unet, condition_encoders=encoders).eval()


def inputs() -> tuple[torch.Tensor, torch.Tensor, VideoCondition]:
    g = torch.Generator().manual_seed(0)
    return (torch.randn(1, 3, 4, 16, 16, generator=g), torch.tensor([200]),
            VideoCondition(text=torch.randn(1, 5, 32, generator=g)))


def test_lora_wraps_exactly_the_spatial_attention_projections() -> None:
    model = video_unet()
    spatial = sorted(n for n, m in model.named_modules()
                     if isinstance(m, torch.nn.Linear) and ".transformer_blocks." in n
                     and n.rsplit(".attn", 1)[-1][2:] in PROJECTIONS and not n.startswith("temporal_"))
    temporal_linears = [n for n, m in model.named_modules()
                        if isinstance(m, torch.nn.Linear) and n.startswith(("temporal_", "condition_"))]
    assert spatial and temporal_linears  # the model has both kinds
    wrapped = add_lora(model, LoraOptions(rank=2))
    assert sorted(wrapped) == sorted(lora_module_names(model)) == spatial
    assert not any(n.startswith(("temporal_", "condition_")) or "temporal" in n for n in wrapped)
    for name in temporal_linears:
        assert not isinstance(model.get_submodule(name), LoraLayer), name
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


@pytest.mark.parametrize("name", [
    "temporal_down_attns.0.0.to_out", "temporal_mid_attns.0.to_qkv",
    "down_blocks.0.temporal_attentions.0.transformer_blocks.0.attn1.to_q",
    "condition_encoders.frame.labels.head.0", "down_blocks.0.attentions.0.proj_in",
    "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.2",
])
def test_target_regex_never_matches_a_non_spatial_or_non_attention_layer(name: str) -> None:
    assert re.fullmatch(SPATIAL_ATTENTION_TARGETS, name) is None


def test_target_regex_matches_spatial_projections_and_exclusion_catches_temporal() -> None:
    for name in ("down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k", "mid_block.attentions.0."
                 "transformer_blocks.0.attn1.to_out.0", "up_blocks.3.attentions.2.transformer_blocks.1.attn1.to_v"):
        assert re.fullmatch(SPATIAL_ATTENTION_TARGETS, name)
    assert re.fullmatch(NEVER_TARGETS, "temporal_up_attns.1.0.to_out")
    assert re.fullmatch(NEVER_TARGETS, "condition_encoders.boxes.adapter.outputs.0")


def test_lora_starts_as_identity_and_round_trips(tmp_path: Path) -> None:
    x, t, cond = inputs()
    model = video_unet()
    with torch.no_grad():
        before = model(x, t, cond)
    options = LoraOptions(rank=4, alpha=8)
    add_lora(model, options)
    with torch.no_grad():
        assert (model(x, t, cond) - before).abs().max() <= 1e-6
        g = torch.Generator().manual_seed(3)
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        tuned = model(x, t, cond)
    assert (tuned - before).abs().max() > 1e-3
    path = tmp_path / "lora.safetensors"
    save_lora(model, path, options)
    fresh = video_unet()  # the same backbone, no LoRA yet: load adds it with the stored options
    wrapped = load_lora(fresh, path)
    assert len(wrapped) == len(lora_module_names(model))
    with torch.no_grad():
        torch.testing.assert_close(fresh(x, t, cond), tuned)
    keys = set(video_unet().state_dict())
    merged = merge_lora(fresh)
    assert len(merged) == len(wrapped) and not lora_module_names(fresh)
    assert set(fresh.state_dict()) == keys  # source key names again: the spatial group saves as SD
    with torch.no_grad():
        torch.testing.assert_close(fresh(x, t, cond), tuned, atol=1e-5, rtol=1e-5)
    other_rank = video_unet()
    add_lora(other_rank, LoraOptions(rank=2))
    with pytest.raises(ValueError, match="lora.safetensors"):
        load_lora(other_rank, path)


def test_lora_on_the_plain_image_unet_and_bad_files(tmp_path: Path) -> None:
    unet = tiny_unet("sd1")
    wrapped = add_lora(unet, LoraOptions(rank=2))
    assert wrapped and all(re.fullmatch(SPATIAL_ATTENTION_TARGETS, n) for n in wrapped)
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        load_lora(unet, tmp_path / "missing.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="junk.safetensors"):
        load_lora(unet, tmp_path / "junk.safetensors")
