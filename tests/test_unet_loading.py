"""Loading SD image UNets from disk: diffusers folder, pipeline folder, original-layout single files."""

from __future__ import annotations

import json
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


def _same_as(reference: UNet2DConditionModel, model: VideoUNet) -> float:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 2, 4, 8, 8, generator=g)
    t = torch.tensor([300])
    text = torch.randn(1, 3, reference.config.cross_attention_dim, generator=g)
    with torch.no_grad():
        out = model.eval()(x, t, VideoCondition(text=text))
        return max(float((out[:, f] - reference(x[:, f], t, text).sample).abs().max()) for f in range(2))


@pytest.fixture()
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection attempt fails the test, with or without HF_HUB_OFFLINE set."""
    import socket

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args[1:]}")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_bin_and_fp16_variant_folders_load(tmp_path: Path, no_network: None) -> None:
    unet = tiny_unet("sd1", seed=7)
    pipeline = tmp_path / "pipeline"
    unet.half().save_pretrained(pipeline / "unet", variant="fp16")  # as a `variant="fp16"` download
    unet.float()  # the reference now holds the fp16-rounded weights too
    unet.save_pretrained(tmp_path / "bin", safe_serialization=False)
    (pipeline / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    for path in (tmp_path / "bin", pipeline, pipeline / "unet"):
        model = VideoUNet.from_pretrained_image(path)
        assert model.dtype == torch.float32
        assert _same_as(unet, model) <= 1e-5


def test_full_sd_checkpoints_with_vae_and_text_keys_and_bare_unet_keys(tmp_path: Path, no_network: None) -> None:
    """Real SD files carry VAE, text-encoder and EMA keys beside the UNet's; UNet-only extracts may
    carry its keys without the `model.diffusion_model.` prefix."""
    from safetensors.torch import save_file

    unet = tiny_unet("sd2", seed=8)
    state = to_original_layout(unet)
    full = {**state, "first_stage_model.decoder.conv_in.weight": torch.randn(4, 4, 3, 3),
            "cond_stage_model.model.positional_embedding": torch.randn(77, 8), "model_ema.decay": torch.tensor(0.9)}
    bare = {k.removeprefix("model.diffusion_model."): v for k, v in state.items()}
    yaml = write_original_yaml(unet, tmp_path / "v2-inference.yaml")
    save_file(full, str(tmp_path / "full.safetensors"))
    torch.save({"state_dict": full, "global_step": 10}, tmp_path / "full.ckpt")
    save_file(bare, str(tmp_path / "bare.safetensors"))
    torch.save({"state_dict": bare}, tmp_path / "bare.ckpt")
    for name in ("full.safetensors", "full.ckpt", "bare.safetensors", "bare.ckpt"):
        assert _same_as(unet, VideoUNet.from_pretrained_image(tmp_path / name, original_config=yaml)) <= 1e-5, name
    config = write_diffusers(unet, tmp_path / "config", pipeline=True)
    assert _same_as(unet, VideoUNet.from_pretrained_image(tmp_path / "full.ckpt", config=config)) <= 1e-5
    with pytest.raises(ValueError, match="needs a local config"):
        VideoUNet.from_pretrained_image(tmp_path / "full.safetensors")



def test_weights_that_disagree_with_the_config_name_the_file_and_key(tmp_path: Path) -> None:
    import json

    wide = write_diffusers(tiny_unet("sd1", seed=1, cross_attention_dim=48), tmp_path / "wide")
    single = write_single_file(tiny_unet("sd1", seed=1), tmp_path / "narrow.safetensors")
    with pytest.raises(ValueError, match=r"narrow.safetensors with config .*wide.*attn2\.to_k\.weight"):
        load_image_unet(single, config=wide)
    folder = write_diffusers(tiny_unet("sd1", seed=1), tmp_path / "edited")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "cross_attention_dim": 48}))
    with pytest.raises(ValueError, match=r"edited: .*attn2\.to_k\.weight"):
        load_image_unet(folder)


def test_original_yaml_without_the_fields_diffusers_reads_is_named(tmp_path: Path) -> None:
    import yaml

    unet = tiny_unet("sd1", seed=1)
    single = write_single_file(unet, tmp_path / "model.safetensors")
    doc = yaml.safe_load(write_original_yaml(unet, tmp_path / "full.yaml").read_text())
    del doc["model"]["params"]["first_stage_config"]
    (tmp_path / "cut.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(ValueError, match=r"cut.yaml lacks the field 'first_stage_config'"):
        load_image_unet(single, original_config=tmp_path / "cut.yaml")


def test_weights_that_do_not_match_their_config_are_refused(tmp_path: Path) -> None:
    """A strict load: missing weights and weights the config has no place for name the first key (diffusers
    itself only logs them)."""
    from safetensors.torch import save_file

    unet = tiny_unet("sd1")
    unet.save_pretrained(tmp_path / "partial")
    save_file({k: v.contiguous() for k, v in unet.state_dict().items() if not k.startswith("mid_block.")},
              str(tmp_path / "partial" / "diffusion_pytorch_model.safetensors"))
    with pytest.raises(ValueError, match=r"partial: no weights for UNet parameter 'mid_block\."):
        load_image_unet(tmp_path / "partial")
    deep = tiny_unet("sd1", transformer_layers_per_block=2)
    write_single_file(deep, tmp_path / "deep.safetensors")
    unet.save_pretrained(tmp_path / "shallow")
    with pytest.raises(ValueError, match=r"deep\.safetensors: weight '.*transformer_blocks\.1\..*' has no place"):
        load_image_unet(tmp_path / "deep.safetensors", config=tmp_path / "shallow")
    deep.save_pretrained(tmp_path / "deep_folder")
    config = json.loads((tmp_path / "shallow" / "config.json").read_text())
    (tmp_path / "deep_folder" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="has no place in the config's UNet"):
        load_image_unet(tmp_path / "deep_folder")
