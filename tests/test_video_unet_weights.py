"""Weight groups: temporal weights move between spatial backbones; bad files name the key and file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from unet_fixtures import tiny_unet

from drivesim.models import VideoCondition, VideoUNet


def _video(seed: int, **options: object) -> VideoUNet:
    return VideoUNet.from_image_unet(tiny_unet("sd1", seed=seed), **options).eval()


def _perturb(model: VideoUNet, prefix: str, seed: int = 7) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith(prefix):
                p.add_(0.2 * torch.randn(p.shape, generator=g))


def test_temporal_weights_round_trip_onto_another_backbone(tmp_path: Path) -> None:
    trained = _video(seed=0, extra_in_channels=2)
    _perturb(trained, "temporal_")
    _perturb(trained, "condition_", seed=8)
    trained.save_temporal(tmp_path / "temporal.safetensors")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    other = _video(seed=1, extra_in_channels=2)  # a different spatial backbone (DreamBooth swap)
    spatial_before = {k: other.state_dict()[k].clone() for k in other.weight_groups()["spatial"]}
    x, t, text = torch.randn(1, 3, 4, 8, 16), torch.tensor([500]), torch.randn(1, 4, 32)
    with torch.no_grad():
        fresh = other(x, t, VideoCondition(text=text))
    other.load_temporal(tmp_path / "temporal.safetensors")

    state, source = other.state_dict(), trained.state_dict()
    groups = other.weight_groups()
    for key in groups["temporal"] + groups["condition"]:
        assert torch.equal(state[key], source[key]), key
    assert all(torch.equal(state[k], v) for k, v in spatial_before.items())
    saved = load_file(str(tmp_path / "temporal.safetensors"))
    assert set(saved) == set(groups["temporal"]) | set(groups["condition"])
    with torch.no_grad():
        assert (other(x, t, VideoCondition(text=text)) - fresh).abs().max() > 1e-3


def test_each_group_saves_and_loads_on_its_own(tmp_path: Path) -> None:
    a, b = _video(seed=0), _video(seed=1)
    a.save_group("spatial", tmp_path / "spatial.safetensors")
    b.load_group("spatial", tmp_path / "spatial.safetensors")
    assert all(torch.equal(b.state_dict()[k], a.state_dict()[k]) for k in a.weight_groups()["spatial"])
    with pytest.raises(ValueError, match="unknown weight group"):
        a.save_group("motion", tmp_path / "x.safetensors")


def test_wrong_shape_names_the_first_mismatched_key_and_file(tmp_path: Path) -> None:
    model = _video(seed=0)
    path = tmp_path / "temporal.safetensors"
    model.save_temporal(path)
    tensors = load_file(str(path))
    keys = model.weight_groups()["temporal"]
    first, later = keys[3], keys[10]
    tensors[first] = torch.zeros(*tensors[first].shape, 2)
    tensors[later] = torch.zeros(5)
    save_file(tensors, str(path))
    with pytest.raises(ValueError, match=rf"temporal.safetensors: key '{first}' has shape"):
        model.load_temporal(path)


def test_missing_and_unexpected_keys_are_named(tmp_path: Path) -> None:
    model = _video(seed=0)
    path = tmp_path / "temporal.safetensors"
    model.save_temporal(path)
    tensors = load_file(str(path))
    key = model.weight_groups()["temporal"][0]
    save_file({k: v for k, v in tensors.items() if k != key}, str(path))
    with pytest.raises(KeyError, match=rf"missing key '{key}'"):
        model.load_temporal(path)
    save_file({**tensors, "temporal_bogus.weight": torch.zeros(1)}, str(path))
    with pytest.raises(KeyError, match="unexpected key 'temporal_bogus.weight'"):
        model.load_temporal(path)
    # A checkpoint of another architecture (no attention layers) does not load silently either.
    no_attn = _video(seed=0, temporal_attention=False)
    with pytest.raises(KeyError, match="temporal.safetensors"):
        no_attn.load_temporal(path)
    with pytest.raises(FileNotFoundError, match="absent.safetensors"):
        model.load_temporal(tmp_path / "absent.safetensors")
