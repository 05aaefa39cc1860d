"""`drivesim train` end to end on micro: the chain autoencoder -> image -> temporal -> interpolation,
exports and their checks, errors, resume and re-export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_fixtures import render_world, train_args

from drivesim.cli import main
from drivesim.exports import ExportError, find_cascade, read_export
from drivesim.models.condition import VideoCondition


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("chain")
    world = render_world(base / "world")
    cache = base / "cache"
    paths = {"world": world, "cache": cache}
    assert main(train_args("autoencoder", world, base / "ae", cache, 4)) == 0
    assert main(train_args("image", world, base / "img", cache, 4, f"model.vae={base / 'ae' / 'export'}",
                           "trainer.val_every_n_steps=2")) == 0
    assert main(train_args("prediction", world, base / "tmp", cache, 4,
                           f"model.pretrained={base / 'img' / 'export'}")) == 0
    assert main(train_args("interpolation", world, base / "itp", cache, 4, "data.fps=12",
                           f"model.pretrained={base / 'img' / 'export'}")) == 0
    for name in ("ae", "img", "tmp", "itp"):
        paths[name] = base / name
    return paths


def test_each_stage_writes_checkpoint_export_and_logs(chain: dict[str, Path]) -> None:
    for name, stage in (("ae", "autoencoder"), ("img", "image"), ("tmp", "temporal"), ("itp", "interpolation")):
        run = chain[name]
        assert (run / "checkpoints" / "last.ckpt").is_file()
        assert "train/loss" in (run / "logs" / "csv" / "metrics.csv").read_text()
        exp = read_export(run / "export")
        assert exp.stage == stage and exp.model_name == "micro"
        summary = json.loads((run / "export" / "summary.json").read_text())
        assert summary["steps"] == 4 and summary["seed"] == 0 and "torch" in summary["packages"]
        assert "git_commit" in summary and summary["data"]["dataset"] == "synthetic"
    assert list((chain["img"] / "logs" / "samples").glob("*.mp4")), "validation clips are written as mp4"


def test_export_links_parents_and_rebuilds_the_model(chain: dict[str, Path]) -> None:
    tmp = read_export(chain["tmp"] / "export")
    assert tmp.parent("image").stage == "image"  # type: ignore[union-attr]
    assert tmp.parent("autoencoder").stage == "autoencoder"  # type: ignore[union-attr]
    assert tmp.fps == 3.0 and tmp.frames == 4 and tmp.size == [64, 128]
    assert len(tmp.camera["intrinsics"]) == 3
    unet = tmp.build_unet()
    vae = tmp.load_vae()
    z = torch.randn(1, 4, 4, 8, 16)
    assert unet(z, torch.tensor([10]), VideoCondition()).shape == z.shape
    assert vae.decode_video(z).shape == (1, 4, 3, 64, 128)
    # The temporal stage trained temporal layers only: spatial weights equal the image export's.
    spatial_tmp = load_file(str(chain["tmp"] / "export" / "spatial.safetensors"))
    spatial_img = load_file(str(chain["img"] / "export" / "spatial.safetensors"))
    assert all(torch.equal(spatial_tmp[k], spatial_img[k]) for k in spatial_img)
    temporal_tmp = load_file(str(chain["tmp"] / "export" / "temporal.safetensors"))
    temporal_img = load_file(str(chain["img"] / "export" / "temporal.safetensors"))
    assert any(not torch.equal(temporal_tmp[k], temporal_img[k]) for k in temporal_img)
    itp = read_export(chain["itp"] / "export")
    assert itp.frames == 5 and itp.fps == 12.0
    itp_unet = itp.build_unet()  # the stage-id encoder the interpolation stage switched on is described
    assert itp_unet.condition_encoders.frame.stage is not None  # type: ignore[union-attr]
    assert any("stage" in k for k in load_file(str(chain["itp"] / "export" / "condition.safetensors")))


def test_cascade_folder_and_parent_digest(chain: dict[str, Path], tmp_path: Path) -> None:
    cascade = tmp_path / "cascade"
    cascade.mkdir()
    for name in ("ae", "img", "tmp", "itp"):
        (cascade / name).symlink_to(chain[name] / "export")
    found = find_cascade(cascade)
    assert set(found) == {"autoencoder", "image", "temporal", "interpolation"}
    with pytest.raises(ExportError, match="not a drivesim export"):
        read_export(chain["tmp"])  # the run folder is not the export
    with pytest.raises(ExportError, match="expected image"):
        read_export(chain["tmp"] / "export", stage="image")


def test_rerun_when_complete_reexports_and_different_config_is_refused(chain: dict[str, Path],
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    world, cache = chain["world"], chain["cache"]
    before = load_file(str(chain["tmp"] / "export" / "temporal.safetensors"))
    cost = json.loads((chain["tmp"] / "export" / "summary.json").read_text())["train_seconds_all_runs"]
    args = train_args("prediction", world, chain["tmp"], cache, 4, f"model.pretrained={chain['img'] / 'export'}")
    assert main(args) == 0
    after = load_file(str(chain["tmp"] / "export" / "temporal.safetensors"))
    assert all(torch.equal(before[k], after[k]) for k in before)
    # the re-export reports the training the checkpoint recorded, not this invocation's few seconds
    recorded = torch.load(chain["tmp"] / "checkpoints" / "last.ckpt", weights_only=True)["callbacks"]["TrainingClock"]
    again = json.loads((chain["tmp"] / "export" / "summary.json").read_text())["train_seconds_all_runs"]
    assert again == round(recorded["train_seconds"], 2) and 0 < again <= cost
    capsys.readouterr()
    assert main([*args, "trainer.lr=0.5"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "trainer.lr" in err and "resume=false" in err


@pytest.mark.parametrize("extra, message", [
    (["model.vae=/no/such/folder"], "model.vae=/no/such/folder: no such file"),
    (["model.pretrained={itp}/export"], "is a 'interpolation' export; expected image or temporal"),
    (["model.pretrained={img}/export", "data.size=[32,64]"], "data.size=[32, 64]"),
    (["model.pretrained={img}/export", "data.frames=3"], "data.frames=3 but model.num_frames=4"),
    (["model.pretrained={img}/export", "model.prediction_type=v_prediction"], "predicts epsilon"),
    (["model.vae={img}/export"], "expected autoencoder"),
])
def test_errors_are_one_line_and_write_nothing(chain: dict[str, Path], tmp_path: Path, extra: list[str],
                                               message: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    extra = [e.format(tmp=chain["tmp"], img=chain["img"], itp=chain["itp"]) for e in extra]
    assert main(train_args("temporal", chain["world"], out, chain["cache"], 2, *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not out.exists()


def test_non_finite_loss_stops_with_one_line_and_no_export(chain: dict[str, Path], tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "nan"
    args = train_args("temporal", chain["world"], out, chain["cache"], 6, f"model.pretrained={chain['img']}/export",
                      "trainer.lr=1e30", "trainer.gradient_clip_val=null", "trainer.checkpoint_every_n_steps=1")
    assert main(args) == 1
    assert not (out / "export").exists()
    assert any("non-finite loss at step" in r.message and "'loss'" in r.message for r in caplog.records)
    state = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in state["state_dict"].values() if v.is_floating_point())


def test_text_conditioned_image_stage_exports_its_projection(chain: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "text"
    args = train_args("image", chain["world"], out, chain["cache"], 2, f"model.vae={chain['ae'] / 'export'}",
                      "model.text_encoder=minilm")
    assert main(args) == 0
    exp = read_export(out / "export")
    encoder = exp.text_encoder()
    assert encoder is not None
    text = encoder(["night, rain"])
    assert text.shape[-1] == exp.build_unet().cross_attention_dim


def test_a_parent_of_another_architecture_is_refused_before_anything_is_written(
        chain: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    args = [a for a in train_args("temporal", chain["world"], out, chain["cache"], 2,
                                  f"model.pretrained={chain['img']}/export") if a != "model=micro"]
    assert main([*args, "model=tiny", "model.text_encoder=null", "data.size=null"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "architecture differs" in err, err
    assert not out.exists()


def test_resume_false_keeps_the_old_export_until_a_new_one_is_written(chain: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(chain["tmp"], run)
    before = load_file(str(run / "export" / "temporal.safetensors"))
    args = train_args("prediction", chain["world"], run, chain["cache"], 6, f"model.pretrained={chain['img']}/export",
                      "trainer.lr=1e30", "trainer.gradient_clip_val=null", "resume=false")
    assert main(args) == 1  # the new run dies of bad numbers...
    after = load_file(str(run / "export" / "temporal.safetensors"))
    assert all(torch.equal(before[k], after[k]) for k in before)  # ...and the good export is still there


def test_prediction_stage_with_time_embedded_temporal_convs(chain: dict[str, Path], tmp_path: Path) -> None:
    """`model.temporal.time_embedding=true` on an image export made without it: the new projections
    start at their init (reported), train, export, and carry the ego speed into the temporal path."""
    out = tmp_path / "tmp_emb"
    assert main(train_args("prediction", chain["world"], out, chain["cache"], 4,
                           f"model.pretrained={chain['img'] / 'export'}", "model.temporal.time_embedding=true")) == 0
    unet = read_export(out / "export").build_unet()
    assert unet.temporal_options["temporal_time_embedding"] is True
    assert any(".emb_proj." in k for k in load_file(str(out / "export" / "temporal.safetensors")))
    assert read_export(chain["tmp"] / "export").build_unet().temporal_options["temporal_time_embedding"] is False
    z, t = torch.randn(1, 4, 4, 8, 16), torch.tensor([500])

    def speed_effect() -> float:
        slow, fast = (VideoCondition(ego_speed=torch.full((1, 4), v)) for v in (0.0, 12.0))
        with torch.no_grad():
            return float((unet(z, t, fast) - unet(z, t, slow)).abs().max())

    with_projection = speed_effect()
    for name, module in unet.named_modules():
        if name.endswith("emb_proj"):
            torch.nn.init.zeros_(module.weight)
            torch.nn.init.zeros_(module.bias)
    assert abs(with_projection - speed_effect()) > 1e-7


def test_prediction_stage_with_context_reference(chain: dict[str, Path], tmp_path: Path) -> None:
    """`model.conditioning.context_reference=true` on an image export made without it: the reference
    convolution starts at its init, trains, exports, and makes a predicted frame depend on the last
    context frame directly (here: with every temporal layer's blend forced to the spatial path)."""
    out = tmp_path / "tmp_ref"
    assert main(train_args("prediction", chain["world"], out, chain["cache"], 4, "trainer.lr=1e-2",
                           f"model.pretrained={chain['img'] / 'export'}",
                           "model.conditioning.context_reference=true")) == 0
    condition = load_file(str(out / "export" / "condition.safetensors"))
    assert any(k.endswith("context.reference.weight") for k in condition)
    unet = read_export(out / "export").build_unet().eval()
    for name, param in unet.named_parameters():
        if name.endswith("mix_logit"):
            param.data.fill_(50.0)  # alpha = 1: the image path only, no temporal mixing
    z, t = torch.randn(1, 4, 4, 8, 16), torch.tensor([500])
    context = torch.randn(1, 4, 4, 8, 16)
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0]])

    def frame3(latents: torch.Tensor) -> torch.Tensor:
        cond = VideoCondition(context_latents=latents, context_mask=mask, context_noise_level=torch.zeros(1))
        with torch.no_grad():
            return unet(z, t, cond)[:, 3]

    moved = context.clone()
    moved[:, 1] += 1.0
    assert float((frame3(moved) - frame3(context)).abs().max()) > 1e-6


def test_prediction_stage_with_context_blend(chain: dict[str, Path], tmp_path: Path) -> None:
    """`model.conditioning.context_blend=true` on an image export made without it: the strengths start at
    zero, train at their own learning rate, export in the condition group, and reload with the model's
    noise schedule; the blend is refused together with the anchor."""
    out = tmp_path / "tmp_blend"
    assert main(train_args("prediction", chain["world"], out, chain["cache"], 4,
                           f"model.pretrained={chain['img'] / 'export'}", "model.conditioning.context_blend=true",
                           "stage.context_blend_lr=0.05", "trainer.ema=false",
                           "trainer.warmup_steps=0")) == 0
    condition = load_file(str(out / "export" / "condition.safetensors"))
    table = condition["condition_encoders.blend.weight"]
    assert float(table.abs().max()) > 0.01  # four steps at lr 0.05 moved it off zero
    unet = read_export(out / "export").build_unet().eval()
    blend = unet.condition_encoders.blend  # type: ignore[union-attr]
    assert blend.alphas_cumprod.numel() == 1000 and blend.prediction_type == "epsilon"
    z, t = torch.randn(1, 4, 4, 8, 16), torch.tensor([999])
    context, mask = torch.randn(1, 4, 4, 8, 16), torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    with torch.no_grad():
        blend.weight.fill_(1.0)
        cond = VideoCondition(context_latents=context, context_mask=mask, context_noise_level=torch.zeros(1))
        out_eps = unet(z, t, cond)
        no_context = unet(z, t, None)
        blend.weight.zero_()
        assert torch.equal(no_context, unet(z, t, None))  # no context (a CFG branch): the plain model
        blend.weight.fill_(1.0)
    a = blend.alphas_cumprod[999].float()
    x0 = (z - (1 - a).sqrt() * out_eps) / a.sqrt()
    assert torch.allclose(x0[:, 2:], context[:, 1:2].expand(1, 2, -1, -1, -1), atol=1e-3)
    bad = main(train_args("prediction", chain["world"], tmp_path / "both", chain["cache"], 1,
                          f"model.pretrained={chain['img'] / 'export'}", "model.conditioning.context_blend=true",
                          "stage.anchor_to_given=true"))
    assert bad == 2  # a usage error (one line), before anything trains


@pytest.mark.parametrize("name", ["tmp", "itp"])
def test_context_use_benchmark_measures_the_given_frames(chain: dict[str, Path], name: str) -> None:
    """benchmarks/bench_context_use.py: the masks generation uses, and a ratio of two errors that differ
    (the given frames do reach the model in the "with" pass)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from bench_context_use import given_mask, measure

    assert given_mask("temporal", 5, 1).tolist() == [[1, 1, 0, 0, 0]]
    assert given_mask("interpolation", 9, 1).tolist() == [[1, 0, 0, 0, 1, 0, 0, 0, 1]]
    result = measure(chain[name] / "export", chain["world"], 2)
    rows = result["rows"]
    assert isinstance(rows, list) and len(rows) == 5
    assert all(r["ratio"] == pytest.approx(r["mse_with"] / r["mse_without"]) for r in rows)
    assert any(r["mse_with"] != r["mse_without"] for r in rows)
    assert float(result["copy_nearest_given_x0_mse"]) >= 0  # type: ignore[arg-type]
    # the least-squares blend is fitted on these clips: it can only lower the "with" error
    assert all(r["ratio_ls_blend"] <= r["ratio"] + 1e-6 for r in rows)
    assert all(set(r["ls_strength_by_distance"]) == {1, 2} for r in rows)


def test_interpolation_fine_tunes_on_frame_correlated_noise(chain: dict[str, Path], tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """`stage.noise_correlation` (PYoCo's mixed noise) while going on from an interpolation export: the drawn
    noise shares that part across a clip's frames and every other draw stays as it was; the run starts from
    the export's own weights, and its export keeps the lineage (image and autoencoder parents) and names the
    export it went on from in `initialised_from`."""
    from drivesim.config import compose_command
    from drivesim.training.build import build_module, build_train_data
    from drivesim.training.data import collate_positioned
    from drivesim.training.resolve import resolve

    parent = chain["itp"] / "export"

    def args(out: Path, steps: int, correlation: float, *extra: str) -> list[str]:
        return train_args("interpolation", chain["world"], out, chain["cache"], steps, "data.fps=12",
                          f"model.pretrained={parent}", f"stage.noise_correlation={correlation}", *extra)

    def drawn(correlation: float) -> tuple[torch.Tensor, ...]:
        resolved = resolve(compose_command("train", args(tmp_path / "probe", 1, correlation)[1:]))
        data = build_train_data(resolved, tmp_path / "probe")
        module = build_module(resolved, data)
        batch = collate_positioned([(0, data.train_set[0]), (1, data.train_set[1])])
        latents = module.latents_of(batch)
        timesteps, noise, cond, made = module.draw(batch, latents, module.generators(batch), module.condition_of(batch))
        return timesteps, noise, cond.context_latents, made

    def frame_correlation(noise: torch.Tensor) -> float:
        flat = noise.flatten(2)  # (B, T, N)
        pairs = [torch.corrcoef(torch.stack([flat[b, i], flat[b, j]]))[0, 1]
                 for b in range(flat.shape[0]) for i in range(flat.shape[1]) for j in range(i)]
        return float(torch.stack(pairs).mean())

    t0, independent, context0, made = drawn(0.0)
    t9, correlated, context9, _ = drawn(0.9)
    assert torch.equal(t0, t9) and torch.equal(context0, context9)  # drawn last: nothing else moves
    to_make = made[0].bool()  # the frames between the keys (the same in every sample)
    assert to_make.tolist() == [False, True, True, True, False]
    assert abs(frame_correlation(independent[:, to_make])) < 0.1
    assert abs(frame_correlation(correlated[:, to_make]) - 0.9) < 0.05
    assert abs(float(correlated.std()) - 1.0) < 0.1
    shared = (correlated[:, to_make] - 0.1 ** 0.5 * independent[:, to_make]) / 0.9 ** 0.5
    assert torch.allclose(shared, shared[:, :1].expand_as(shared), atol=1e-5)  # one common draw
    # the keys keep independent noise, as generation noises its given frames
    assert torch.equal(correlated[:, ~to_make], independent[:, ~to_make])

    out = tmp_path / "ft"
    assert main(args(out, 1, 0.9, "trainer.lr=1e-12", "trainer.ema=false", "trainer.warmup_steps=0")) == 0
    exp = read_export(out / "export")
    assert exp.stage == "interpolation"
    assert exp.parent_path("image") == (chain["img"] / "export").resolve()
    assert exp.parent_path("autoencoder") == (chain["ae"] / "export").resolve()
    assert "interpolation" not in exp.parents
    summary = json.loads((out / "export" / "summary.json").read_text())
    assert summary["initialised_from"] == str(parent.resolve())
    before, after = load_file(str(parent / "temporal.safetensors")), load_file(str(out / "export" / "temporal.safetensors"))
    assert all(torch.allclose(before[k], after[k], atol=1e-6) for k in before)  # went on from the export
    capsys.readouterr()
    assert main(args(tmp_path / "bad", 1, 1.0)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "stage.noise_correlation=1.0 must lie in [0, 1)" in err, err
    assert main(train_args("image", chain["world"], tmp_path / "img", chain["cache"], 1,
                           f"model.vae={chain['ae'] / 'export'}", "stage.noise_correlation=0.5")) == 2
    assert "only the prediction and interpolation stages" in capsys.readouterr().err
    # going on from an export keeps the meaning of its frames
    assert main(train_args("interpolation", chain["world"], tmp_path / "fps", chain["cache"], 1, "data.fps=6",
                           "data.frames=5", f"model.pretrained={parent}")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "data.fps=6.0 but model.pretrained=" in err, err
    assert not (tmp_path / "fps").exists()


def test_interpolation_keys_benchmark_scores_model_and_blend(chain: dict[str, Path]) -> None:
    """benchmarks/bench_interpolation_keys.py: the keys come back exactly, the truth scores zero, and the
    frame-step split tells a pop at the keys from motion between them."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from bench_interpolation_keys import frame_steps, measure, parse_setting

    grey = torch.zeros(1, 5, 2, 2)
    grey[:, 1:4] = 10.0  # the in-between frames agree with each other, not with the keys at 0 and 4
    mask = torch.tensor([[1.0, 0.0, 0.0, 0.0, 1.0]])
    assert frame_steps(grey, mask) == {"at_key": 10.0, "between": 0.0}
    assert parse_setting("20,0.05,0.95") == (20, 0.05, 0.95)
    with pytest.raises(SystemExit, match="steps,init_strength,noise_correlation"):
        parse_setting("20,0.05")
    result = measure(chain["itp"] / "export", chain["world"], 2, [(2, 1.0, 0.0), (4, 0.25, 0.9)], seed=0)
    truth, blend, *models = result["rows"]
    assert truth["latent_mse"] == 0.0 and blend["latent_mse"] > 0 and len(models) == 2
    for row in models:
        by_position = row["latent_mse_by_position"]
        assert by_position[0] == by_position[-1] == 0.0 and row["latent_mse"] > 0  # keys imposed exactly
    assert models[0]["latent_mse"] != models[1]["latent_mse"]
