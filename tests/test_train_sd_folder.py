"""`drivesim train` from SD-style weights in a diffusers pipeline folder (the user's path to Stable Diffusion),
at micro size: the export of a UNet read from disk rebuilds, the next stage keeps its exact spatial UNet, the
folder's scheduler config is honoured, and unsupported UNets are one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import DDIMScheduler, UNet2DConditionModel
from train_fixtures import render_world, train_args

from drivesim.cli import main
from drivesim.diffusion.objectives import DiffusionObjective
from drivesim.exports import read_export
from drivesim.models.condition import VideoCondition

MICRO_UNET = {"sample_size": [8, 16], "in_channels": 4, "out_channels": 4, "block_out_channels": [32, 32],
              "layers_per_block": 1, "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
              "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"], "norm_num_groups": 8,
              "cross_attention_dim": 32, "attention_head_dim": 4}
QUIRKS = {"flip_sin_to_cos": False, "freq_shift": 1, "norm_eps": 1e-3, "mid_block_scale_factor": 0.7}


def _pipeline(folder: Path, prediction_type: str = "epsilon", **unet_config: object) -> Path:
    torch.manual_seed(0)
    UNet2DConditionModel(**{**MICRO_UNET, **unet_config}).save_pretrained(folder / "unet")
    DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                  prediction_type=prediction_type).save_pretrained(folder / "scheduler")
    return folder


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("sdfolder")
    world, cache = render_world(root / "world", scenes=2, seconds=4.0), root / "cache"
    assert main(train_args("autoencoder", world, root / "ae", cache, 2)) == 0
    return {"root": root, "world": world, "cache": cache, "vae": root / "ae" / "export"}


def test_a_pipeline_folder_trains_image_then_prediction_with_the_same_spatial_unet(base: dict[str, Path]) -> None:
    sd = _pipeline(base["root"] / "sd", **QUIRKS)
    config = sd / "unet" / "config.json"  # a key another diffusers version wrote, which this one does not take
    config.write_text(json.dumps({**json.loads(config.read_text()), "legacy_option": 1}))
    img, pred = base["root"] / "img", base["root"] / "pred"
    assert main(train_args("image", base["world"], img, base["cache"], 2, f"model.pretrained={sd}",
                           f"model.vae={base['vae']}", "model.conditioning=null")) == 0
    image = read_export(img / "export")
    rebuilt = image.build_unet()  # its marker's architecture hash matches the model.json rebuild
    assert main(train_args("prediction", base["world"], pred, base["cache"], 2,
                           f"model.pretrained={img / 'export'}")) == 0
    prediction = read_export(pred / "export").build_unet()
    recorded = json.loads((pred / "export" / "model.json").read_text())["unet"]
    assert {k: recorded[k] for k in QUIRKS} == QUIRKS  # the parent's UNet, not the preset's defaults
    x = torch.randn(1, 2, 4, 8, 16)
    with torch.no_grad():  # image-only: both are the frozen spatial UNet, exactly
        a = rebuilt(x, torch.tensor([500]), VideoCondition(image_only=True))
        b = prediction(x, torch.tensor([500]), VideoCondition(image_only=True))
    assert torch.allclose(a, b, atol=1e-6)


def test_model_unet_null_takes_the_weights_own_architecture(base: dict[str, Path], tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A pipeline whose UNet is not the preset's: the preset's fields are one line; `model.unet=null` drops them."""
    sd = _pipeline(tmp_path / "sd", block_out_channels=[16, 32], norm_num_groups=4)
    args = ["model.pretrained=" + str(sd), f"model.vae={base['vae']}", "model.conditioning=null"]
    assert main(train_args("image", base["world"], tmp_path / "refused", base["cache"], 1, *args)) == 2
    assert "block_out_channels" in capsys.readouterr().err
    assert main(train_args("image", base["world"], tmp_path / "run", base["cache"], 1, *args, "model.unet=null")) == 0
    recorded = json.loads((tmp_path / "run" / "export" / "model.json").read_text())["unet"]
    assert recorded["block_out_channels"] == [16, 32] and recorded["norm_num_groups"] == 4


@pytest.mark.parametrize(("unet_config", "prediction_type", "extra", "named"), [
    ({}, "v_prediction", [], "model.prediction_type=epsilon but"),
    ({"class_embed_type": "timestep"}, "epsilon", [], "class_embed_type"),
])
def test_pipeline_folders_that_disagree_are_one_line_errors(base: dict[str, Path], tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str], unet_config: dict,
                                                             prediction_type: str, extra: list[str], named: str) -> None:
    sd = _pipeline(tmp_path / "sd", prediction_type, **unet_config)
    out = tmp_path / "run"
    assert main(train_args("image", base["world"], out, base["cache"], 1, f"model.pretrained={sd}",
                           f"model.vae={base['vae']}", "model.conditioning=null", *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and named in err, err


def test_zero_terminal_snr_needs_v_prediction() -> None:
    schedule = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012,
                "rescale_betas_zero_snr": True}
    with pytest.raises(ValueError, match="rescale_betas_zero_snr needs model.prediction_type=v_prediction"):
        DiffusionObjective(schedule, "epsilon")
    assert DiffusionObjective(schedule, "v_prediction").snr[-1] == 0
