"""Loading SD image UNets from disk: diffusers folder, pipeline folder, original-layout single files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import UNet2DConditionModel
from unet_fixtures import (
    STYLES,
    tiny_unet,
    to_original_layout,
    write_diffusers,
    write_original_yaml,
    write_single_file,
)

from drivesim.models import VideoCondition, VideoUNet
from drivesim.models.loading import load_image_unet


@pytest.fixture(scope="module", params=["sd1", "sd2"])
def disk(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | str]:
    """One tiny UNet written every way a user may bring SD weights."""
    root = tmp_path_factory.mktemp(request.param)
    unet = tiny_unet(request.param, seed=5)
    return {
        "style": request.param,
        "folder": write_diffusers(unet, root / "unet_folder"),
        "pipeline": write_diffusers(unet, root / "pipeline", pipeline=True),
        "safetensors": write_single_file(unet, root / "model.safetensors"),
        "ckpt": write_single_file(unet, root / "model.ckpt"),
        "yaml": write_original_yaml(unet, root / "v-inference.yaml"),
    }


def _state(unet: UNet2DConditionModel) -> dict[str, torch.Tensor]:
    return unet.state_dict()


@pytest.mark.parametrize("kind", ["safetensors", "ckpt"])
def test_key_map_agrees_with_diffusers_single_file_loader(disk: dict, kind: str) -> None:
    """Our diffusers->original key map is what diffusers' own converter inverts exactly."""
    source = UNet2DConditionModel.from_pretrained(disk["folder"], local_files_only=True)
    loaded = UNet2DConditionModel.from_single_file(str(disk[kind]), config=str(disk["folder"]),
                                                   local_files_only=True)
    a, b = _state(source), _state(loaded)
    assert set(a) == set(b)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert len(to_original_layout(source)) == len(a)  # one original key per diffusers key


@pytest.mark.parametrize("source, options", [
    ("folder", {}),
    ("pipeline", {}),
    ("safetensors", {"config": "folder"}),
    ("ckpt", {"config": "pipeline"}),
    ("safetensors", {"original_config": "yaml"}),
], ids=["diffusers-folder", "pipeline-folder", "safetensors+config", "ckpt+pipeline-config",
        "safetensors+original-yaml"])
def test_every_layout_inflates_to_the_image_model(disk: dict, source: str, options: dict[str, str]) -> None:
    kwargs = {k: disk[v] for k, v in options.items()}
    model = VideoUNet.from_pretrained_image(disk[source], **kwargs).eval()
    reference = UNet2DConditionModel.from_pretrained(disk["folder"], local_files_only=True).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2, 4, 8, 16, generator=g)
    t = torch.tensor([[10, 700]])
    text = torch.randn(1, 3, STYLES[disk["style"]]["cross_attention_dim"], generator=g)
    with torch.no_grad():
        out = model(x, t, VideoCondition(text=text))
        expected = torch.stack([reference(x[:, f], t[:, f], text).sample for f in range(2)], dim=1)
    assert (out - expected).abs().max() <= 1e-5


def test_single_file_without_local_config_fails_clearly(disk: dict) -> None:
    with pytest.raises(ValueError, match="needs a local config.*never fetches"):
        load_image_unet(disk["safetensors"])


def test_bad_paths_are_named(tmp_path: Path, disk: dict) -> None:
    with pytest.raises(FileNotFoundError, match="nope"):
        load_image_unet(tmp_path / "nope")
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="weights.bin"):
        load_image_unet(tmp_path / "weights.bin", config=disk["folder"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="neither a diffusers UNet folder"):
        load_image_unet(tmp_path / "empty")
    with pytest.raises(ValueError, match="either config or original_config"):
        load_image_unet(disk["ckpt"], config=disk["folder"], original_config=disk["yaml"])
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_image_unet(disk["ckpt"], original_config=tmp_path / "missing.yaml")


class _NotATensor:
    pass


def test_ckpt_is_read_weights_only(tmp_path: Path, disk: dict) -> None:
    """A pickle carrying arbitrary objects is refused, never executed."""
    path = tmp_path / "pickled.ckpt"
    torch.save({"state_dict": {"model.diffusion_model.x": torch.zeros(1)}, "payload": _NotATensor()}, path)
    with pytest.raises(ValueError, match="weights-only"):
        load_image_unet(path, config=disk["folder"])


def test_checkpoint_without_unet_weights_is_named(tmp_path: Path, disk: dict) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "vae_only.safetensors"
    save_file({"first_stage_model.decoder.conv_in.weight": torch.zeros(1)}, str(path))
    with pytest.raises(ValueError, match="vae_only.safetensors holds no original-layout UNet"):
        load_image_unet(path, config=disk["folder"])
