"""Units of training: the clip -> model adapter on real batches, the objective against diffusers,
per-sample draws, the latent cache, and that every stage's loss falls when it overfits."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler
from train_fixtures import render_world, train_args

from drivesim.cli import main
from drivesim.config import compose_command
from drivesim.data import ClipDataModule
from drivesim.data.collate import ClipBatch, collate_clips
from drivesim.diffusion.objectives import DiffusionObjective
from drivesim.models import build_video_unet
from drivesim.training.adapter import batch_to_model_input, labels_to_condition, waypoints_with_nan
from drivesim.training.data import GlobalOrderSampler
from drivesim.training.randomness import per_sample, sample_generators

SCHEDULE = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render_world(tmp_path_factory.mktemp("units") / "world", scenes=2, seconds=6.0)


def _batch(world: Path) -> ClipBatch:
    cfg = compose_command("train", ["data=synthetic", f"data.root={world}", "data.frames=4", "data.size=[64,128]",
                                    "data.num_workers=0", "data.batch_size=2"]).data
    dm = ClipDataModule(cfg)
    dm.setup("fit")
    return next(iter(dm.train_dataloader()))


def test_adapter_feeds_real_batches_into_the_video_unet(world: Path) -> None:
    batch = _batch(world)
    inp = batch_to_model_input(batch)
    assert inp.frames is not None and inp.frames.min() >= -1 and inp.frames.max() <= 1
    assert torch.allclose((inp.frames + 1) * 127.5, batch.frames.float(), atol=1e-4)
    cond = inp.condition
    mask = batch.box_mask
    assert mask.any(), "the synthetic world has boxes"
    b = cond.boxes[mask]  # type: ignore[index]
    assert (b >= 0).all() and (b <= 1).all()
    h, w = batch.frames.shape[-2:]
    expected = (batch.boxes_2d[mask] / torch.tensor([w, h, w, h])).clamp(0, 1)
    assert torch.allclose(b, expected)
    assert torch.equal(cond.labels, batch.labels - 1) and int(cond.labels.min()) >= -1  # type: ignore[arg-type]
    assert cond.boxes_3d is not None and cond.boxes_3d.shape[-2:] == (8, 3)
    assert all(p for p in inp.prompts), "scene descriptions become prompts"
    unet = build_video_unet(compose_command("train", []).model)
    z = torch.randn(len(batch), 4, 4, 8, 16)
    assert unet(z, torch.tensor([5, 500]), cond).shape == z.shape


def test_labels_and_waypoints_conventions() -> None:
    assert labels_to_condition(torch.tensor([[0, 1, 3]])).tolist() == [[-1, 0, 2]]
    wp = torch.ones(1, 2, 3, 2)
    mask = torch.tensor([[[True, True, False], [True, False, False]]])
    out = waypoints_with_nan(wp, mask)
    assert torch.isnan(out[0, 0, 2]).all() and torch.isfinite(out[0, 0, :2]).all()  # per waypoint, not per frame
    assert torch.isnan(out[0, 1, 1:]).all() and torch.isfinite(out[0, 1, 0]).all()


def test_ego_encoder_treats_nan_per_waypoint() -> None:
    unet = build_video_unet(compose_command("train", []).model)
    encoders = unet.condition_encoders
    with torch.no_grad():
        for p in encoders.parameters():  # type: ignore[union-attr]
            p.add_(torch.randn_like(p) * 0.1)
    ego = encoders.frame.ego  # type: ignore[union-attr]
    speed = torch.zeros(1, 2)
    wp = torch.randn(1, 2, 3, 2)
    partly = wp.clone()
    partly[:, :, 2] = float("nan")
    a = ego(speed, speed, partly, 1, 2)
    b = ego(speed, speed, wp, 1, 2)
    assert torch.isfinite(a).all() and not torch.allclose(a, b)  # known waypoints still count
    far = partly.clone()
    far[:, :, 2] = 123.0  # the unknown value itself is ignored
    assert torch.allclose(a, ego(speed, speed, torch.where(torch.isnan(partly), torch.nan, far), 1, 2))


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_objective_matches_diffusers(prediction: str) -> None:
    objective = DiffusionObjective(SCHEDULE, prediction)
    ref = DDPMScheduler(**SCHEDULE, prediction_type=prediction)
    x0, noise = torch.randn(2, 3, 4, 8, 8), torch.randn(2, 3, 4, 8, 8)
    t = torch.tensor([[10, 500, 999], [0, 1, 2]])
    noisy = objective.add_noise(x0, noise, t)
    for i in range(2):
        for j in range(3):
            assert torch.allclose(noisy[i, j], ref.add_noise(x0[i, j:j + 1], noise[i, j:j + 1], t[i, j:j + 1])[0])
    target = objective.target(x0, noise, t)
    want = noise if prediction == "epsilon" else ref.get_velocity(x0.flatten(0, 1), noise.flatten(0, 1), t.flatten())
    assert torch.allclose(target.flatten(0, 1), want.reshape(6, 4, 8, 8), atol=1e-6)
    x0_hat = objective.predicted_x0(noisy, target, t)
    assert torch.allclose(x0_hat, x0, atol=1e-3)


def test_min_snr_weights() -> None:
    eps = DiffusionObjective(SCHEDULE, "epsilon", min_snr_gamma=5.0)
    t = torch.tensor([0, 500, 999])
    snr = eps.snr[t]
    assert torch.allclose(eps.loss_weight(t), torch.clamp(snr, max=5.0) / snr)
    v = DiffusionObjective(SCHEDULE, "v_prediction", min_snr_gamma=5.0)
    assert torch.allclose(v.loss_weight(t), torch.clamp(snr, max=5.0) / (snr + 1))
    assert torch.equal(DiffusionObjective(SCHEDULE).loss_weight(t), torch.ones(3))
    with pytest.raises(ValueError, match="prediction_type"):
        DiffusionObjective(SCHEDULE, "sample")


def test_loss_space_reweights_to_the_implied_error() -> None:
    """An eps model's loss measured in v space equals the MSE of the v its output implies."""
    objective = DiffusionObjective(SCHEDULE, "epsilon", loss_space="v_prediction")
    v_model = DiffusionObjective(SCHEDULE, "v_prediction")
    x0, noise = torch.randn(3, 1, 4, 8, 8), torch.randn(3, 1, 4, 8, 8)
    t = torch.tensor([[5], [500], [990]])
    wrong_eps = noise + 0.1 * torch.randn(noise.shape, generator=torch.Generator().manual_seed(1))
    noisy = objective.add_noise(x0, noise, t)
    implied_x0 = objective.predicted_x0(noisy, wrong_eps, t)
    # the v target of (implied x0, the noise it implies) against the true v
    a = objective.scheduler.alphas_cumprod[t].reshape(3, 1, 1, 1, 1)
    implied_v = a.sqrt() * (noisy - a.sqrt() * implied_x0) / (1 - a).sqrt() - (1 - a).sqrt() * implied_x0
    v_mse = ((implied_v - v_model.target(x0, noise, t)) ** 2).mean(dim=(2, 3, 4))
    eps_mse = ((wrong_eps - noise) ** 2).mean(dim=(2, 3, 4))
    torch.testing.assert_close(eps_mse * objective.loss_weight(t), v_mse, rtol=1e-3, atol=1e-6)
    assert objective.loss_weight(t)[2] > 20 * objective.loss_weight(t)[0]
    assert torch.equal(DiffusionObjective(SCHEDULE, "epsilon", loss_space="epsilon").loss_weight(t), torch.ones(3, 1))
    with pytest.raises(ValueError, match="set one of them"):
        DiffusionObjective(SCHEDULE, "epsilon", min_snr_gamma=5.0, loss_space="v_prediction")
    with pytest.raises(ValueError, match="loss_space"):
        DiffusionObjective(SCHEDULE, "epsilon", loss_space="x0")


def test_draws_depend_only_on_seed_and_position() -> None:
    a = [torch.rand(3, generator=g) for g in sample_generators(7, [10, 11])]
    b = [torch.rand(3, generator=g) for g in sample_generators(7, [11])]
    assert torch.equal(a[1], b[0]) and not torch.equal(a[0], a[1])


def test_timestep_power_draws_high_noise_more_often_and_keeps_the_uniform_draw() -> None:
    from drivesim.training.randomness import clip_timesteps

    def draw(power: float) -> torch.Tensor:
        return clip_timesteps(sample_generators(7, list(range(4000)), "train"), 1000, power)

    uniform = draw(1.0)
    assert torch.equal(uniform, per_sample(sample_generators(7, list(range(4000)), "train"), "randint", (), high=1000))
    skewed = draw(0.3)
    assert torch.equal(skewed, draw(0.3)) and int(skewed.min()) >= 0 and int(skewed.max()) <= 999
    # floor(1000 u^0.3) > 850 when u > 0.85^(1/0.3) = 0.582: 42 % of the draws (uniform: 15 %).
    assert abs(float((skewed > 850).float().mean()) - 0.418) < 0.03
    assert abs(float((uniform > 850).float().mean()) - 0.149) < 0.03


@pytest.mark.parametrize("override", ["stage.timestep_power=0", "stage.anchor_to_given=true"])
def test_a_bad_stage_option_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], override: str) -> None:
    """An out-of-range timestep power; an anchor outside the prediction stage."""
    out = tmp_path / "p"
    assert main(["train", "stage=autoencoder", "model=micro", "data=synthetic", f"data.root={tmp_path}",
                 f"out={out}", override]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and override.split("=")[0] in err, err
    assert not out.exists()


def test_the_anchor_is_each_frames_last_given_frame() -> None:
    from drivesim.models.conditioning.context import given_anchor

    latents = torch.arange(5.0).reshape(1, 5, 1, 1, 1).expand(2, 5, 2, 2, 2).clone()
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 1.0, 0.0]])
    anchor = given_anchor(latents, mask)[:, :, 0, 0, 0]
    assert anchor.tolist() == [[0.0, 1.0, 1.0, 1.0, 1.0], [0.0, 1.0, 1.0, 3.0, 3.0]]  # none before: zeros
    assert given_anchor(latents, torch.zeros(2, 5)).abs().sum() == 0


def test_global_order_shards_and_resumes() -> None:
    whole = list(GlobalOrderSampler(10, 3, batch_size=4, end_batch=5))
    ranks = [list(GlobalOrderSampler(10, 3, batch_size=2, world_size=2, rank=r, end_batch=5)) for r in (0, 1)]
    merged = [item for g in range(5) for r in (0, 1) for item in ranks[r][2 * g: 2 * g + 2]]
    assert merged == whole
    assert list(GlobalOrderSampler(10, 3, batch_size=4, start_batch=3, end_batch=5)) == whole[12:]
    assert sorted(i for _, i in whole[:10]) == list(range(10))  # each pass is a permutation


def test_latent_cache_is_reused_and_invalidated(world: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    assert main(train_args("autoencoder", world, tmp_path / "ae", cache, 2)) == 0
    vae = f"model.vae={tmp_path / 'ae' / 'export'}"
    assert main(train_args("image", world, tmp_path / "img", cache, 1, vae)) == 0
    first = sorted(p.name for p in (cache / "latents").iterdir())
    assert len(first) == 2  # train and val splits
    assert main(train_args("image", world, tmp_path / "img2", cache, 1, vae)) == 0
    assert sorted(p.name for p in (cache / "latents").iterdir()) == first  # reused
    assert main(train_args("image", world, tmp_path / "img3", cache, 1, vae, "data.fps=6")) == 0
    assert len(list((cache / "latents").iterdir())) == 4  # another clip definition, another cache


def test_latent_cache_resumes_after_a_kill_to_the_same_cache(world: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A caching run killed after some shards resumes after its last complete shard, encodes only what
    is left, and ends with the cache an uninterrupted run writes (skipped items counted once)."""
    import json

    from safetensors.torch import load_file

    from drivesim.data.factory import build_dataset
    from drivesim.training import latent_cache

    cfg = compose_command("train", ["data=synthetic", f"data.root={world}", "data.frames=4", "data.fps=3",
                                    "data.size=[64,128]"]).data
    base = build_dataset(cfg, split="train")
    count = 11
    holes = {4, 7}  # items an on_error=skip dataset gave up on

    class WithHoles(torch.utils.data.Dataset):  # type: ignore[type-arg]
        def __len__(self) -> int:
            return count

        def __getitem__(self, index: int):  # type: ignore[no-untyped-def]
            return None if index in holes else base[index % len(base)]

    calls: list[int] = []

    def encode(frames: torch.Tensor) -> torch.Tensor:  # per clip, deterministic
        calls.append(len(frames))
        return frames.float().mean(dim=(3, 4), keepdim=True)

    class Killed(Exception):
        pass

    left = [3]

    def dying(frames: torch.Tensor) -> torch.Tensor:
        if not left[0]:
            raise Killed
        left[0] -= 1
        return encode(frames)

    monkeypatch.setattr(latent_cache, "SHARD_SIZE", 3)  # shards end mid-batch
    whole = latent_cache.build_cache(WithHoles(), encode, tmp_path / "whole", batch_size=2)
    with pytest.raises(Killed):
        latent_cache.build_cache(WithHoles(), dying, tmp_path / "resumed", batch_size=2)
    assert not (tmp_path / "resumed" / "index.json").exists()
    assert [p.name for p in (tmp_path / "resumed").glob("shard_*")] == ["shard_00000.safetensors"]
    calls.clear()
    resumed = latent_cache.build_cache(WithHoles(), encode, tmp_path / "resumed", batch_size=2)
    assert len(calls) == len(range(2, count, 2))  # from the batch holding item 3 on, not from item 0
    assert json.loads((whole / "index.json").read_text()) == json.loads((resumed / "index.json").read_text())
    assert json.loads((whole / "index.json").read_text())["skipped"] == len(holes)
    for shard in sorted(whole.glob("shard_*")):
        a, b = load_file(str(shard)), load_file(str(resumed / shard.name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("stage", ["autoencoder", "image", "temporal", "interpolation", "temporal-anchored"])
def test_loss_falls_when_overfitting_one_batch(world: Path, stage: str) -> None:
    """Fixed draws on one batch, 40 AdamW steps: the stage's objective must fall clearly."""
    from drivesim.training.build import build_module, build_train_data
    from drivesim.training.data import collate_positioned
    from drivesim.training.resolve import resolve

    ae_dir = world.parent / "overfit_ae"
    if stage != "autoencoder" and not (ae_dir / "export").exists():
        assert main(train_args("autoencoder", world, ae_dir, world.parent / "cache", 2)) == 0
    extra = [] if stage == "autoencoder" else [f"model.vae={ae_dir / 'export'}"]
    if stage == "temporal-anchored":
        stage = "temporal"
        extra.append("stage.anchor_to_given=true")
    if stage == "interpolation":
        extra.append("data.fps=12")
    cfg = compose_command("train", [a for a in train_args(stage, world, world.parent / f"o_{stage}",
                                                          world.parent / "cache", 1, *extra)[1:]])
    resolved = resolve(cfg)
    data = build_train_data(resolved, world.parent / f"o_{stage}")
    module = build_module(resolved, data)
    item = data.train_set[0]
    batch = collate_positioned([(0, item), (1, data.train_set[1])])
    params = module.trainable()
    optimizer = torch.optim.AdamW(params, lr=3e-3)
    torch.manual_seed(0)

    def loss() -> torch.Tensor:
        return module.losses(batch, module.generators(batch))["loss"]

    with torch.no_grad():
        start = float(loss())
    for _ in range(40):
        optimizer.zero_grad()
        value = loss()
        value.backward()
        optimizer.step()
    with torch.no_grad():
        end = float(loss())
    assert math.isfinite(end) and end < 0.8 * start, (stage, start, end)


def test_every_item_skipped_stops_the_run(world: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    broken = tmp_path / "broken"
    import shutil

    shutil.copytree(world, broken)
    for image in (broken / "sweeps" / "CAM_FRONT").glob("*.jpg"):
        image.write_bytes(b"not a jpeg")
    for image in (broken / "samples" / "CAM_FRONT").glob("*.jpg"):
        image.write_bytes(b"not a jpeg")
    args = train_args("autoencoder", broken, tmp_path / "run", tmp_path / "cache", 3, "data.on_error=skip")
    assert main(args) == 1
    assert any("every item" in r.message and "skipped" in r.message for r in caplog.records)
    assert not (tmp_path / "run" / "export").exists()


def test_collate_keeps_none_counts() -> None:
    batch = collate_clips([None, None])
    assert len(batch) == 0 and batch.skipped == 2 and np.isscalar(batch.skipped)


def test_a_bug_in_the_loader_is_never_a_skipped_item(world: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from drivesim.data.nuscenes import NuScenesClips

    clips = NuScenesClips(world, "v1.0-synth", frames=2, fps=3.0, size=(64, 128), on_error="skip")

    def broken(*args: object) -> None:
        raise TypeError("a bug, not a bad file")

    monkeypatch.setattr(clips, "_clip", broken)
    with pytest.raises(TypeError, match="a bug"):
        clips[0]


def test_a_non_finite_gradient_stops_before_the_step_and_exports_are_checked(world: Path) -> None:
    from drivesim.training.base import NonFiniteLossError
    from drivesim.training.build import build_module
    from drivesim.training.resolve import resolve

    cfg = compose_command("train", train_args("autoencoder", world, world.parent / "nan_grad",
                                              world.parent / "cache", 1)[1:])
    module = build_module(resolve(cfg))
    params = module.trainable()
    for p in params:
        p.grad = torch.zeros_like(p)
    module.on_before_optimizer_step(None)  # finite: nothing happens
    params[0].grad[...] = float("inf")  # type: ignore[index]
    with pytest.raises(NonFiniteLossError, match="non-finite gradient"):
        module.on_before_optimizer_step(None)
    assert module.weights_finite()
    with torch.no_grad():
        params[0][...] = float("nan")
    assert not module.weights_finite()


def test_recolour_rotates_hue_keeps_greys_and_respects_its_probability() -> None:
    from drivesim.training.autoencoder_module import recolour

    x = torch.full((2, 3, 4, 4), -1.0)
    x[:, 0] = 1.0  # pure red
    x[:, :, 0, 0] = 0.2  # one grey pixel
    half_turn = torch.tensor([[0.0, 1.0, 0.0], [0.9, 1.0, 0.0]])  # hue +pi, saturation x1; second not picked
    out = recolour(x, half_turn, probability=0.5, saturation_max=2.0)
    assert torch.allclose(out[1], x[1])  # draw 0.9 >= 0.5: untouched
    assert torch.allclose(out[0, :, 0, 0], x[0, :, 0, 0], atol=1e-4)  # a grey stays grey
    red_to = out[0, :, 1, 1]
    assert red_to[0] < -0.9 and red_to[1] > 0.9 and red_to[2] > 0.9  # red turned half-way round: cyan


def test_colour_patches_paste_flat_saturated_rectangles_within_the_size_range() -> None:
    from drivesim.training.autoencoder_module import PATCH_DRAWS, paste_colour_patches

    x = torch.zeros((3, 3, 32, 64))  # mid grey
    draws = torch.rand((3, PATCH_DRAWS), generator=torch.Generator().manual_seed(0))
    draws[0, 0], draws[1, 0], draws[2, 0] = 0.1, 0.9, 0.1  # frames 0 and 2 picked, frame 1 not
    draws[0, 1] = 0.0  # exactly one rectangle on frame 0
    draws[0, 2:9] = torch.tensor([0.0, 0.999, 0.5, 0.5, 0.5, 1.0, 1.0])  # 8 x 16 px, hue 180 deg: cyan
    out = paste_colour_patches(x, draws, probability=0.5, size_range=(8, 16))
    assert torch.equal(out[1], x[1]) and torch.equal(x, torch.zeros_like(x))  # untouched, input not modified
    changed = (out[0] != x[0]).any(dim=0)
    rows, cols = changed.any(dim=1).sum().item(), changed.any(dim=0).sum().item()
    assert (rows, cols) == (8, 16) and changed.sum().item() == 8 * 16  # one flat rectangle of the drawn size
    colour = out[0][:, changed].T.unique(dim=0)
    assert colour.shape[0] == 1 and torch.allclose(colour[0], torch.tensor([-1.0, 1.0, 1.0]), atol=1e-4)
    assert (out[2] != x[2]).any()


def test_chroma_loss_sees_colour_errors_that_keep_brightness() -> None:
    from drivesim.training.autoencoder_module import chroma_l1

    grey = torch.zeros((1, 3, 4, 4))
    assert chroma_l1(grey, grey).item() == 0.0
    tinted = grey.clone()
    tinted[:, 0] += 0.3  # redder, and the luma change is small against the chroma change
    tinted[:, 1] -= 0.15
    assert chroma_l1(tinted, grey).item() > 0.05


@pytest.mark.parametrize("override, field", [("stage.colour_patches=1.5", "colour_patches"),
                                             ("stage.colour_patch_size=[9,4]", "colour_patch_size"),
                                             ("stage.chroma_weight=-1", "chroma_weight")])
def test_autoencoder_colour_options_are_checked(override: str, field: str) -> None:
    from drivesim.training.autoencoder_module import check_colour_options

    cfg = compose_command("train", ["stage=autoencoder", "model=micro", "out=/tmp/unused", override])
    with pytest.raises(ValueError, match=f"stage.{field}"):
        check_colour_options(cfg.stage)


def test_an_out_of_range_colour_option_is_one_line_before_anything_is_written(tmp_path: Path,
                                                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ae"
    assert main(["train", "stage=autoencoder", "model=micro", "data=synthetic", f"data.root={tmp_path}",
                 f"out={out}", "stage.colour_patches=1.5"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "stage.colour_patches" in err, err
    assert not out.exists()
