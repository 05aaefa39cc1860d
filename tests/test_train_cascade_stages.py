"""The later cascade stages on micro: upsampler, temporal decoder and LoRA train, export, refuse wrong
parents with one line, overfit one batch, and plug into `drivesim generate`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from train_fixtures import render_world, train_args

from drivesim.cli import main
from drivesim.config import compose_command
from drivesim.exports import read_export
from drivesim.models.condition import VideoCondition


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("cascade")
    world = render_world(base / "world", scenes=2, seconds=6.0)
    cache = base / "cache"
    p = {"world": world, "cache": cache, **{k: base / k for k in ("ae", "img", "tmp", "up", "dec", "lora")}}
    assert main(train_args("autoencoder", world, p["ae"], cache, 2)) == 0
    assert main(train_args("image", world, p["img"], cache, 2, f"model.vae={p['ae'] / 'export'}")) == 0
    assert main(train_args("prediction", world, p["tmp"], cache, 2, f"model.pretrained={p['img'] / 'export'}")) == 0
    assert main(train_args("upsampler", world, p["up"], cache, 2, f"model.pretrained={p['img'] / 'export'}",
                           "data.size=[128,256]")) == 0
    assert main(train_args("decoder", world, p["dec"], cache, 2, f"model.vae={p['ae'] / 'export'}",
                           "trainer.lr=1e-2")) == 0
    assert main(train_args("lora", world, p["lora"], cache, 2, f"model.pretrained={p['tmp'] / 'export'}",
                           "trainer.lr=1e-2")) == 0
    return p


def test_exports_carry_marker_parents_and_rebuild(chain: dict[str, Path]) -> None:
    up = read_export(chain["up"] / "export", stage="upsampler")
    assert up.parent("image").stage == "image" and up.parent("autoencoder").stage == "autoencoder"  # type: ignore[union-attr]
    assert up.size == [128, 256] and up.frames == 4
    unet = up.build_unet()
    assert unet.condition_extra_in is not None and unet.condition_encoders.frame.noise_aug is not None  # type: ignore[union-attr]
    assert unet.condition_encoders.guess_blend is not None  # type: ignore[union-attr]
    assert up.config()["stage"]["lowres_input"] == "upscaled"
    # Trained on 8x16 patches, run convolutionally on whole 16x32-latent frames with the low-res input.
    z = torch.randn(1, 4, 4, 16, 32)
    cond = VideoCondition(noise_aug_level=torch.tensor([0.1]), extra={"lowres": torch.randn(1, 4, 4, 16, 32)})
    assert unet(z, torch.tensor([10]), cond).shape == z.shape
    # Spatial weights came from the image export and trained further.
    spatial_up = load_file(str(chain["up"] / "export" / "spatial.safetensors"))
    spatial_img = load_file(str(chain["img"] / "export" / "spatial.safetensors"))
    assert set(spatial_up) == set(spatial_img) and any(not torch.equal(spatial_up[k], spatial_img[k]) for k in spatial_img)

    dec = read_export(chain["dec"] / "export", stage="decoder")
    assert dec.parent("autoencoder").stage == "autoencoder" and dec.prediction_type is None  # type: ignore[union-attr]
    vae = dec.load_vae()
    assert vae.temporal_decoder is not None
    assert any(float(p.abs().sum()) > 0 for n, p in vae.temporal_decoder.named_parameters() if "conv_out" in n)
    assert vae.decode_video(torch.randn(1, 4, 4, 8, 16)).shape == (1, 4, 3, 64, 128)
    assert vae.temporal_decoder.padding == "replicate" == dec.config()["stage"]["temporal_padding"]

    lora = read_export(chain["lora"] / "export", stage="lora")
    assert lora.parent("temporal").stage == "temporal"  # type: ignore[union-attr]
    assert lora.spatial_hash == read_export(chain["tmp"] / "export").spatial_hash
    keys = list(load_file(str(chain["lora"] / "export" / "lora.safetensors")))
    assert keys and all("lora_" in k and ".attn" in k and "temporal" not in k for k in keys)


@pytest.mark.parametrize("stage, extra, message", [
    ("upsampler", ["model.pretrained={dec}/export"], "is a 'decoder' export; expected image or temporal"),
    ("upsampler", ["model.pretrained={img}/export", "data.size=[100,256]"], "must be a multiple of stage.upscale"),
    ("lora", ["model.vae={ae}/export"], "the lora stage personalises an image or temporal export"),
    ("lora", ["model.pretrained={up}/export"], "is a 'upsampler' export; expected image or temporal"),
    ("decoder", ["model.vae={ae}/export", "stage.cache_latents=true"], "the decoder stage trains on frames"),
    ("decoder", ["model.vae={img}/export"], "expected autoencoder"),
])
def test_wrong_parents_and_settings_are_one_line(chain: dict[str, Path], tmp_path: Path, stage: str,
                                                 extra: list[str], message: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    extra = [e.format(**{k: str(v) for k, v in chain.items()}) for e in extra]
    assert main(train_args(stage, chain["world"], out, chain["cache"], 1, *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not out.exists()


def _module(chain: dict[str, Path], stage: str, *extra: str):  # type: ignore[no-untyped-def]
    from drivesim.training.build import build_module, build_train_data
    from drivesim.training.resolve import resolve

    out = chain["world"].parent / f"o_{stage}"
    cfg = compose_command("train", train_args(stage, chain["world"], out, chain["cache"], 1, *extra)[1:])
    resolved = resolve(cfg)
    data = build_train_data(resolved, out)
    return build_module(resolved, data), data


@pytest.mark.parametrize("stage", ["upsampler", "decoder", "lora"])
def test_loss_falls_when_overfitting_one_batch(chain: dict[str, Path], stage: str) -> None:
    """Fixed draws on one batch, 30 AdamW steps: the stage's objective must fall clearly."""
    from drivesim.training.data import collate_positioned

    extra = {"upsampler": [f"model.pretrained={chain['img'] / 'export'}", "data.size=[128,256]"],
             "decoder": [f"model.vae={chain['ae'] / 'export'}", "stage.disc_weight=0"],
             # At micro size attention-only LoRA barely moves (0.995 -> 0.89 in 30 steps at rank 8, lr 1e-2);
             # with the ResNet convs it learns (-> 0.28 at rank 4): the micro / tiny presets use both.
             "lora": [f"model.pretrained={chain['tmp'] / 'export'}", "stage.lora_targets=attention+conv"]}[stage]
    module, data = _module(chain, stage, *extra)
    batch = collate_positioned([(0, data.train_set[0]), (1, data.train_set[1])])
    optimizer = torch.optim.AdamW(module.trainable(), lr=3e-3)
    term = "rec" if stage == "decoder" else "loss"

    def loss() -> torch.Tensor:
        return module.losses(batch, module.generators(batch))[term]  # type: ignore[no-any-return]

    with torch.no_grad():
        start = float(loss())
    for _ in range(30):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    with torch.no_grad():
        end = float(loss())
    assert math.isfinite(end) and end < 0.8 * start, (stage, start, end)


def test_upsampler_pack_round_trips_both_inputs() -> None:
    from drivesim.training.upsampler_module import pack_pair, unpack_pair

    high, low = torch.randn(2, 3, 4, 8, 16), torch.randn(2, 3, 4, 2, 4)
    back = unpack_pair(pack_pair(high, low, 4), 4, "latents")
    assert torch.equal(back[0], high) and torch.equal(back[1], low)
    guess = torch.randn(2, 3, 4, 8, 16)
    packed = pack_pair(high, guess, 4)
    assert packed.shape == (2, 3, 4 * 32, 2, 4)  # both space-to-depth on the low-res grid
    back = unpack_pair(packed, 4, "upscaled")
    assert torch.equal(back[0], high) and torch.equal(back[1], guess)
    with pytest.raises(ValueError, match="not a multiple of 17"):
        unpack_pair(torch.randn(1, 1, 16, 2, 4), 4, "latents")
    with pytest.raises(ValueError, match="not a multiple of 32"):
        unpack_pair(packed[:, :, :-4], 4, "upscaled")
    with pytest.raises(ValueError, match="lowres_input 'nearest' must be one of"):
        unpack_pair(packed, 4, "nearest")


@pytest.mark.parametrize("mode", ["upscaled", "latents"])
def test_upsampler_cached_latents_match_encoding_every_step(chain: dict[str, Path], mode: str) -> None:
    """stage.cache_latents=true packs both encodings once; a step must see exactly what encoding the
    frames in the step gives (same patch, same augmentation), and the cache is not the plain one."""
    from drivesim.training.data import collate_positioned

    base = [f"model.pretrained={chain['img'] / 'export'}", "data.size=[128,256]", f"stage.lowres_input={mode}",
            f"stage.guess_blend={mode == 'upscaled'}"]
    plain, plain_data = _module(chain, "upsampler", *base, "stage.cache_latents=false")
    cached, cached_data = _module(chain, "upsampler", *base, "stage.cache_latents=true")
    assert cached_data.identity()["latent_cache_train"] != plain_cache_key(chain, *base)
    for index in (0, 1):
        item = cached_data.train_set[index]
        # 4 channels x (16 space-to-depth + 1 low-res latent, or 16 of the upscaled guess)
        assert item[1].shape[1] == 4 * (32 if mode == "upscaled" else 17)
    batch_plain = collate_positioned([(0, plain_data.train_set[0]), (1, plain_data.train_set[1])])
    batch_cached = collate_positioned([(0, cached_data.train_set[0]), (1, cached_data.train_set[1])])
    a = plain.inputs(batch_plain, plain.generators(batch_plain))
    b = cached.inputs(batch_cached, cached.generators(batch_cached))
    torch.testing.assert_close(a[0], b[0], atol=1e-5, rtol=0)  # the high-res patch (target)
    torch.testing.assert_close(a[1], b[1])
    torch.testing.assert_close(a[3].extra["lowres"], b[3].extra["lowres"], atol=1e-5, rtol=0)
    if mode == "upscaled":  # the clean guess rides along for the blend, the patch of the same place
        assert a[3].guess is not None and b[3].guess is not None
        torch.testing.assert_close(a[3].guess, b[3].guess, atol=1e-5, rtol=0)
        assert a[3].guess.shape == a[0].shape
    else:
        assert a[3].guess is None


def plain_cache_key(chain: dict[str, Path], *extra: str) -> str:
    """The key a one-size latent cache of the same data and autoencoder would have."""
    from drivesim.training.build import folder_digest
    from drivesim.training.latent_cache import cache_key
    from drivesim.training.resolve import resolve

    args = train_args("upsampler", chain["world"], chain["world"].parent / "o_key", chain["cache"], 1, *extra)
    resolved = resolve(compose_command("train", args[1:]))
    assert resolved.autoencoder_path is not None
    return cache_key(resolved.cfg.data, "train", folder_digest(resolved.autoencoder_path))


def test_lora_from_a_folder_of_subject_images(chain: dict[str, Path], tmp_path: Path) -> None:
    import cv2

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):  # a magenta-and-yellow striped "subject", at three sizes (resized and cropped)
        image = np.zeros((48 + 16 * i, 96, 3), np.uint8)
        image[:, ::8] = (255, 0, 255)
        image[::6] = (0, 255, 255)
        cv2.imwrite(str(photos / f"subject_{i}.png"), image)
    out = tmp_path / "lora"
    assert main(train_args("lora", chain["world"], out, chain["cache"], 2, "data=images", f"data.root={photos}",
                           "data.prompt=a photo of a sks car at night", f"model.pretrained={chain['tmp'] / 'export'}",
                           "data.batch_size=2")) == 0
    exp = read_export(out / "export", stage="lora")
    assert exp.frames == 1 and exp.size == [64, 128]
    summary = json.loads((out / "export" / "summary.json").read_text())
    assert summary["data"]["train_clips"] == 3 and summary["data"]["dataset"] == "images"
    from drivesim.data.images import ImageFolderClips

    clip = ImageFolderClips(photos, frames=2, size=(64, 128), prompt="night")[0]
    assert clip is not None and tuple(clip.frames.shape) == (2, 3, 64, 128) and clip.labels.time_of_day != 0
    assert clip.source.description == "night" and len(clip.boxes_2d[0]) == 0


def test_lora_trains_adapters_only_and_decoder_its_temporal_layers(chain: dict[str, Path]) -> None:
    from drivesim.training.data import collate_positioned

    module, data = _module(chain, "lora", f"model.pretrained={chain['tmp'] / 'export'}", "stage.prior_weight=1")
    names = [n for n, p in module.unet.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n and "temporal" not in n for n in names)
    batch = collate_positioned([(0, data.train_set[0])])
    terms = module.losses(batch, module.generators(batch))
    assert set(terms) == {"loss", "subject", "prior"} and float(terms["prior"]) == 0.0  # adapters start at zero
    with torch.no_grad():
        for p in module.trainable():
            p.add_(0.05)
    assert float(module.losses(batch, module.generators(batch))["prior"]) > 0  # the base is the adapter-free model
    dec, _ = _module(chain, "decoder", f"model.vae={chain['ae'] / 'export'}")
    trained = {n for n, p in dec.vae.named_parameters() if p.requires_grad}
    assert trained and all(".temporal_" in f".{n}" for n in trained)


def test_decoder_adversarial_terms_reach_only_their_own_player(chain: dict[str, Path]) -> None:
    from drivesim.training.data import collate_positioned

    dec, data = _module(chain, "decoder", f"model.vae={chain['ae'] / 'export'}", "stage.disc_start=0")
    batch = collate_positioned([(0, data.train_set[0])])
    terms = dec.losses(batch, dec.generators(batch))
    assert {"g_loss", "d_loss", "rec"} <= set(terms)
    generator, critic = dec.trainable(), list(dec.discriminator.parameters())

    def grads(term: str, params: list[torch.nn.Parameter]) -> float:
        out = torch.autograd.grad(terms[term], params, allow_unused=True, retain_graph=True)
        return sum(float(g.abs().sum()) for g in out if g is not None)

    assert grads("g_loss", generator) > 0 and grads("g_loss", critic) == 0
    assert grads("d_loss", critic) > 0 and grads("d_loss", generator) == 0


def _frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])]


def test_generate_with_upsampler_decoder_and_lora(chain: dict[str, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    base = ["generate", f"checkpoint={chain['tmp'] / 'export'}", "seconds=2", "sampler.steps=2", "seed=1"]
    out = tmp_path / "full"
    assert main([*base, f"out={out}", f"upsampler={chain['up'] / 'export'}", "upsample_seconds=1.4",
                 f"decoder={chain['dec'] / 'export'}", f"lora={chain['lora'] / 'export'}"]) == 0
    printed = [Path(p).name for p in capsys.readouterr().out.split()]
    assert printed[-1] == "video_hr.mp4"
    hr, lo = _frames(out / "video_hr.mp4"), _frames(out / "video.mp4")
    assert len(lo) == 6 and len(hr) == 4 and hr[0].shape == (256, 512, 3)  # round(1.4 s x 3 fps), x4 each side
    assert json.loads((out / "video_hr.json").read_text())["frames"] == 4
    run = json.loads((out / "run.json").read_text())
    assert {"upsampler", "decoder", "lora"} <= set(run["exports"])
    plain = tmp_path / "plain"
    assert main([*base, f"out={plain}"]) == 0
    assert not np.array_equal(np.stack(_frames(plain / "video.mp4")), np.stack(lo))  # lora + decoder change it


def test_swap_keeps_temporal_weights_and_changes_spatial_attention(chain: dict[str, Path]) -> None:
    from drivesim.pipelines.cascade_stages import apply_lora

    tmp, lora = read_export(chain["tmp"] / "export"), read_export(chain["lora"] / "export")
    before = tmp.build_unet().state_dict()
    after = apply_lora(tmp.build_unet(), tmp, lora, required=True).state_dict()
    assert set(before) == set(after)  # merged: the source key names, no adapter left
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(".attn" in k and "temporal" not in k for k in changed)


def test_upsampler_windows_overlap_and_cover_every_frame(chain: dict[str, Path]) -> None:
    from drivesim.pipelines.cascade_stages import load_upsampler
    from drivesim.pipelines.engine import SamplerSettings

    up_export = read_export(chain["up"] / "export")
    up = load_upsampler(up_export, up_export.load_vae(), SamplerSettings(steps=1), "cpu", torch.float32, 8)
    assert (up.frames, up.overlap) == (4, 1)
    rng = np.random.default_rng(0)
    low = [rng.integers(0, 255, (32, 64, 3), dtype=np.uint8) for _ in range(7)]
    for n in (1, 4, 5, 7):
        out = list(up.stream(low[:n], seed=0))
        assert len(out) == n and out[0].shape == (128, 256, 3)
    a, b = list(up.stream(low, seed=0)), list(up.stream(low, seed=0))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))  # a function of the seed


def test_upsampler_with_full_guess_strength_returns_the_upscaled_guess(chain: dict[str, Path]) -> None:
    """The guess blend at strength 1 makes every clean-frame estimate the upscaled guess: a DDIM window
    then ends exactly on it, whatever the UNet says; at 0 the model's own output decides."""
    from drivesim.pipelines.cascade_stages import load_upsampler
    from drivesim.pipelines.engine import SamplerSettings
    from drivesim.training.upsampler_module import encode_lowres

    up_export = read_export(chain["up"] / "export")
    up = load_upsampler(up_export, up_export.load_vae(), SamplerSettings(steps=3), "cpu", torch.float32, 8)
    assert up.lowres_mode == "upscaled" and up.guess
    blend = up.unet.condition_encoders.guess_blend  # type: ignore[union-attr]
    low = np.random.default_rng(1).integers(0, 255, (4, 32, 64, 3), dtype=np.uint8)
    x = torch.from_numpy(low).permute(0, 3, 1, 2)[None].float() / 127.5 - 1.0
    with torch.no_grad():
        guess = encode_lowres(up.vae, x, 4, "upscaled")
        blend.weight.fill_(1.0)
        full = up.window(low, None, torch.Generator().manual_seed(0))
        blend.weight.fill_(0.0)
        free = up.window(low, None, torch.Generator().manual_seed(0))
    torch.testing.assert_close(full, guess, atol=1e-4, rtol=0)
    assert float((free - guess).abs().mean()) > 10 * float((full - guess).abs().mean())


def test_decoder_export_without_a_padding_loads_with_zeros(chain: dict[str, Path], tmp_path: Path) -> None:
    """Decoder exports made before session 13 were trained with zero temporal padding: loaded so; an
    unknown padding in an export's config is one line naming the export."""
    import shutil

    from omegaconf import OmegaConf

    from drivesim.exports import ExportError

    old = tmp_path / "dec_old"
    shutil.copytree(chain["dec"] / "export", old, symlinks=True)
    cfg = OmegaConf.load(old / "config.yaml")
    del cfg.stage["temporal_padding"]
    OmegaConf.save(cfg, old / "config.yaml")
    marker = json.loads((old / "drivesim_export.json").read_text())
    marker["parents"] = {k: {**v, "path": str((chain["dec"] / "export" / v["path"]).resolve())}
                         for k, v in marker["parents"].items()}
    (old / "drivesim_export.json").write_text(json.dumps(marker))
    vae = read_export(old, stage="decoder").load_vae()
    assert vae.temporal_decoder.padding == "zeros"
    cfg.stage["temporal_padding"] = "reflect"
    OmegaConf.save(cfg, old / "config.yaml")
    with pytest.raises(ExportError, match="stage.temporal_padding"):
        read_export(old, stage="decoder").load_vae()


def test_decoder_of_another_autoencoder_is_refused(chain: dict[str, Path], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "ae2"
    assert main(train_args("autoencoder", chain["world"], other, chain["cache"], 1, "seed=5")) == 0
    dec = tmp_path / "dec2"
    assert main(train_args("decoder", chain["world"], dec, chain["cache"], 1, f"model.vae={other / 'export'}")) == 0
    capsys.readouterr()
    out = tmp_path / "gen"
    assert main(["generate", f"checkpoint={chain['tmp'] / 'export'}", f"out={out}", "seconds=1",
                 f"decoder={dec / 'export'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "trained with the autoencoder" in err, err
    assert not out.exists()


def test_autoencoder_fine_tunes_an_export_with_the_colour_options(chain: dict[str, Path], tmp_path: Path) -> None:
    from diffusers import AutoencoderKL

    parent = read_export(chain["ae"] / "export", stage="autoencoder")
    out = tmp_path / "ae_ft"
    assert main(train_args("autoencoder", chain["world"], out, chain["cache"], 1, f"model.vae={parent.path}",
                           "stage.colour_patches=1.0", "stage.chroma_weight=1.0", "stage.colour_augment=0.5",
                           "model.autoencoder.block_out_channels=[4,4]")) == 0  # the parent's widths win
    summary = json.loads((out / "export" / "summary.json").read_text())
    assert summary["initialised_from"] == str(parent.autoencoder_path())
    assert "train/chroma" in summary["final_metrics"]
    before = AutoencoderKL.from_pretrained(parent.autoencoder_path()).state_dict()
    after = AutoencoderKL.from_pretrained(read_export(out / "export", stage="autoencoder").autoencoder_path()).state_dict()
    assert before.keys() == after.keys()
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    # one step from the parent's weights: every tensor moved, none far (a fresh init would differ wholesale)
    assert moved and max((before[k] - after[k]).abs().max().item() for k in moved) < 0.05


def test_upsampler_fidelity_bench_scores_every_method(chain: dict[str, Path], tmp_path: Path) -> None:
    """benchmarks/bench_upsampler_fidelity.py runs the generation path on validation clips and scores each
    method against the real frames; its scores are right on known cases."""
    import importlib.util

    from train_fixtures import REPO

    spec = importlib.util.spec_from_file_location("bench_upsampler_fidelity",
                                                  REPO / "benchmarks" / "bench_upsampler_fidelity.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    real = torch.rand(3, 3, 32, 64, generator=torch.Generator().manual_seed(0))
    exact = bench.scores(real, real, bench.downscale(real, 4), 4, 3.0)
    assert exact["psnr"] > 100 and exact["psnr_low"] > 100 and exact["detail_ratio"] == pytest.approx(1.0)
    blurred = bench.scores(bench.F.avg_pool2d(real, 3, 1, 1), real, bench.downscale(real, 4), 4, 3.0)
    assert blurred["detail_ratio"] < 0.5 and blurred["psnr"] < 20
    out = tmp_path / "fidelity.json"
    result = bench.main(["--export", str(chain["up"] / "export"), "--world", str(chain["world"]), "--clips", "2",
                         "--steps", "1", "--threads", "1", "--out", str(out)])
    assert json.loads(out.read_text())["figures"] == result["figures"]
    assert set(result["figures"]) == set(bench.METHODS) and result["clips"] == 2
    assert all(math.isfinite(v) for row in result["figures"].values() for v in row.values())
    assert result["lowres_input"] == "upscaled" and result["guess_blend"] is True
    assert result["figures"]["bicubic"]["psnr_low"] > 25  # plain interpolation keeps its input
