"""drivesim's metric networks: seeded resumable training at test size, disjoint seeds, shipped-weight
loading, validation figures, and the metrics built on them (FID-synth, FVD-synth, action)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from metrics_fixtures import tiny_recipe, train_tiny_weights
from safetensors.torch import load_file

from drivesim.metrics import FIDSynth, FVDSynth
from drivesim.metrics.nets import train as train_module
from drivesim.metrics.nets.attrnet import build_attrnet
from drivesim.metrics.nets.segnet import build_segnet
from drivesim.metrics.nets.synth_data import check_disjoint
from drivesim.metrics.nets.weights import ATTRIBUTE_NET, LAYOUT_NET, load_net, read_metadata


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    return train_tiny_weights(tmp_path_factory.mktemp("nets"), validate=True)


def test_training_seeds_must_avoid_every_protocols_held_out_seeds() -> None:
    check_disjoint([1000, 1001])
    with pytest.raises(ValueError, match="synth-bench-v1"):
        check_disjoint([1000, 90001])


def test_weights_carry_version_config_and_validation(weights: Path) -> None:
    seg = load_net(LAYOUT_NET, build_segnet, weights / LAYOUT_NET.filename)
    attr = load_net(ATTRIBUTE_NET, build_attrnet, weights / ATTRIBUTE_NET.filename)
    assert seg.record()["name"] == "layout-seg-v1" and attr.record()["name"] == "synth-attr-v3"
    meta = read_metadata(weights / ATTRIBUTE_NET.filename)
    validation = meta["training"]["validation"]
    assert {"r2_speed", "r2_yaw_rate", "accuracy_time_of_day", "accuracy_order", "sensitivity"} <= set(validation)
    assert set(validation["sensitivity"]) == {"noise", "blur", "shuffle"}
    assert meta["training"]["train_seeds"] == [1000] and meta["training"]["seconds_per_step"] > 0
    layout = read_metadata(weights / LAYOUT_NET.filename)["training"]["validation"]
    assert {"recall", "boxes", "meets_min_recall", "bars_met"} <= set(layout)
    with pytest.raises(ValueError, match="version"):
        load_net(LAYOUT_NET, build_segnet, weights / ATTRIBUTE_NET.filename)


def test_a_killed_run_resumes_to_the_uninterrupted_result(tmp_path: Path, monkeypatch) -> None:
    torch.set_num_threads(1)
    whole = train_module.train(tiny_recipe("layout", tmp_path / "a", steps=4, out=tmp_path / "a.safetensors"))
    calls = {"n": 0}
    real_loss = train_module._seg_loss

    def dies_at_step_3(*args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_loss(*args)

    monkeypatch.setattr(train_module, "_seg_loss", dies_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        train_module.train(tiny_recipe("layout", tmp_path / "b", steps=4, out=tmp_path / "b.safetensors"))
    after = {"n": 0}

    def counted(*args):
        after["n"] += 1
        return real_loss(*args)

    monkeypatch.setattr(train_module, "_seg_loss", counted)
    resumed = train_module.train(tiny_recipe("layout", tmp_path / "b", steps=4, out=tmp_path / "b.safetensors"))
    assert after["n"] == 2  # steps 3 and 4 only: it resumed from the step-2 checkpoint
    a, b = load_file(str(whole)), load_file(str(resumed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_synthetic_frechet_metrics_and_actions_run_on_the_encoder(weights: Path) -> None:
    from drivesim.metrics.action import action_series
    from drivesim.metrics.videos import EvalVideo, FrameCond

    encoder = load_net(ATTRIBUTE_NET, build_attrnet, weights / ATTRIBUTE_NET.filename).module
    g = torch.Generator().manual_seed(0)
    clips = torch.randint(0, 256, (4, 8, 3, 64, 128), dtype=torch.uint8, generator=g)
    fvd = FVDSynth(encoder)
    fvd.update(clips[:2], real=True)
    fvd.update(clips[2:], real=False)
    fid = FIDSynth(encoder)
    fid.update(clips[:2].flatten(0, 1), real=True)
    fid.update(clips[2:].flatten(0, 1), real=False)
    assert np.isfinite(float(fvd.compute())) and np.isfinite(float(fid.compute()))
    video = EvalVideo("v", clips.flatten(0, 1)[:16], 12.0, [FrameCond(k / 12, 5.0, 0.1) for k in range(16)])
    series = action_series(encoder, video)
    assert len(series.times) == 3 and np.isfinite(series.speed_error).all()
    # Speed commanded alone (a scenario may leave the yaw rate to the model): speed is still scored.
    from drivesim.metrics.action import mean_error

    speed_only = EvalVideo("s", video.frames, 12.0, [FrameCond(k / 12, 5.0, float("nan")) for k in range(16)])
    alone = action_series(encoder, speed_only)
    assert np.allclose(alone.speed_error, series.speed_error) and np.isnan(alone.yaw_rate_error).all()
    assert mean_error([alone], "speed") == (float(series.speed_error.mean()), 3)
    assert mean_error([alone], "yaw_rate")[1] == 0


def test_a_checkpoint_of_another_recipe_is_refused(tmp_path: Path) -> None:
    from dataclasses import replace

    torch.set_num_threads(1)
    recipe = tiny_recipe("layout", tmp_path / "w", steps=2, out=tmp_path / "a.safetensors")
    recipe.save_every = 1
    train_module.train(recipe)
    with pytest.raises(ValueError, match="another recipe"):
        train_module.train(replace(recipe, lr=0.5, steps=3))


def test_shuffled_copies_are_never_in_order_and_keep_the_frames() -> None:
    clips = torch.arange(4 * 5, dtype=torch.uint8).view(4, 5, 1, 1, 1).expand(4, 5, 3, 2, 2).contiguous()
    out = train_module.shuffled_copies(clips, np.random.default_rng(0))
    for a, b in zip(clips, out):
        assert not torch.equal(a, b)
        assert sorted(b[:, 0, 0, 0].tolist()) == a[:, 0, 0, 0].tolist()  # the same frames, another order


def test_the_motion_branch_reads_optical_flow_and_old_configs_keep_frame_differences() -> None:
    from drivesim.metrics.nets.attrnet import consecutive_flow

    # A textured frame panned 2 px to the left per frame (what a turn does to the far scene): DIS flow says -2.
    rng = np.random.default_rng(0)
    texture = cv2_blur(rng.integers(0, 255, (64, 160)).astype(np.uint8))
    frames = np.stack([texture[:, 16 + 2 * k: 16 + 2 * k + 128] for k in range(4)])
    x = torch.from_numpy(frames).float().div(127.5).sub(1.0)[None, :, None].expand(1, 4, 3, 64, 128)
    flow = consecutive_flow(x)
    assert flow.shape == (1, 4, 2, 64, 128) and not flow[0, 3].any()  # the last frame has no successor
    assert abs(float(flow[0, :3, 0, 8:-8, 8:-8].median()) + 2.0) < 0.2
    assert abs(float(flow[0, :3, 1, 8:-8, 8:-8].median())) < 0.2
    v2 = build_attrnet({"widths": [4, 8, 8, 8], "temporal_width": 8, "feature_dim": 16, "motion_widths": [4, 4, 8, 8]})
    v3 = build_attrnet({"widths": [4, 8, 8, 8], "temporal_width": 8, "feature_dim": 16, "motion_widths": [4, 4, 8, 8],
                        "motion_input": "flow+diff"})
    assert v2.motion[0][0].in_channels == 3 and v3.motion[0][0].in_channels == 5
    clip = torch.from_numpy(np.repeat(frames[:, None], 3, 1))[None]  # uint8 (1, 4, 3, 64, 128)
    assert v3(clip)["yaw_rate"].shape == (1,) and v2(clip)["yaw_rate"].shape == (1,)
    with pytest.raises(ValueError, match="motion_input"):
        build_attrnet({"motion_input": "optical"})


def cv2_blur(image: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(image, (0, 0), 1.5)
