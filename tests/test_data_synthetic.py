"""The synthetic world's nuScenes-format output through the nuScenes loader: boxes equal to the
devkit's own projection, ego speed and yaw rate equal to the renderer's truth, labels as rendered."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from nuscenes.utils.geometry_utils import BoxVisibility, view_points

from drivesim.config.synth import CameraConfig, SynthConfig
from drivesim.data import NuScenesClips
from drivesim.data.labels import VOCAB
from drivesim.synth import render_dataset
from drivesim.synth.truth import load_scene_truth


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "world"
    cfg = SynthConfig(out=str(out), scenes=2, seconds=4.0, seed=3, camera=CameraConfig(width=256, height=128))
    return render_dataset(cfg)


@pytest.mark.parametrize("size", [(64, 128), (50, 90)])
def test_boxes_equal_the_devkit_projection(synth: Path, size: tuple[int, int]) -> None:
    ds = NuScenesClips(synth, "v1.0-synth", frames=6, fps=12.0, size=size)
    nusc = ds.nusc
    h, w = size
    checked = sweeps = 0
    for i in range(0, len(ds), 2):
        clip = ds[i]
        for t, token in enumerate(clip.source.frame_ids):
            sd = nusc.get("sample_data", token)
            sweeps += not sd["is_key_frame"]
            _, boxes, k = nusc.get_sample_data(token, box_vis_level=BoxVisibility.ANY)
            by_instance = {nusc.get("sample_annotation", b.token)["instance_token"]: b for b in boxes}
            W, H = sd["width"], sd["height"]
            s = max(h / H, w / W)
            rh, rw = max(h, round(H * s)), max(w, round(W * s))
            sx, sy, x0, y0 = rw / W, rh / H, (rw - w) // 2, (rh - h) // 2
            got = {nusc.instance[j]["token"]: b for j, b in zip(clip.instance_ids[t], clip.boxes_2d[t])}
            assert set(got) <= set(by_instance)
            for inst, box in by_instance.items():
                corners = box.corners()
                if (corners[2] <= 0.1).any():
                    continue
                uv = view_points(corners, k, normalize=True)[:2]
                ref = np.array([uv[0].min(), uv[1].min(), uv[0].max(), uv[1].max()])
                ref = np.clip(ref, 0, [W, H, W, H]) * [sx, sy, sx, sy] - [x0, y0, x0, y0]
                ref = np.clip(ref, 0, [w, h, w, h])
                if ref[2] - ref[0] < 1e-6 or ref[3] - ref[1] < 1e-6:
                    continue  # cropped away
                assert inst in got, f"{token}: box of {inst} missing"
                inside = uv[0].min() >= 0 and uv[1].min() >= 0 and uv[0].max() <= W and uv[1].max() <= H
                if inside:
                    np.testing.assert_allclose(got[inst], ref, atol=1e-3)
                else:  # cut by the image edge: the devkit's hull-clip lies within the clipped extent
                    assert np.all(got[inst][:2] >= ref[:2] - 1e-3) and np.all(got[inst][2:] <= ref[2:] + 1e-3)
                checked += 1
    assert checked > 20 and sweeps > 0


def test_ego_speed_and_yaw_rate_equal_the_renderer_truth(synth: Path) -> None:
    ds = NuScenesClips(synth, "v1.0-synth", frames=8, fps=12.0, size=(32, 64))
    frames = 0
    speed_errors: list[np.ndarray] = []
    for i in range(len(ds)):
        clip = ds[i]
        truth = load_scene_truth(synth, clip.source.scene)
        idx = np.array([truth.sample_data_tokens.index(t) for t in clip.source.frame_ids])
        # Finite differences cannot follow a step in the truth (braking starts, a curve starts): exact
        # where the truth is smooth, and off by at most a fraction of the step elsewhere.
        accel = truth.ego_accel
        step = np.abs(np.diff(accel, prepend=accel[0])) + np.abs(np.diff(accel, append=accel[-1]))
        speed_errors.append(np.abs(clip.ego.speed - truth.ego_speed[idx]))
        assert np.all(speed_errors[-1] <= 0.01 + step[idx] / 12)
        rate = truth.ego_yaw_rate
        jump = np.abs(np.diff(rate, prepend=rate[0])) + np.abs(np.diff(rate, append=rate[-1]))
        smooth = jump[idx] < 0.01
        np.testing.assert_allclose(clip.ego.yaw_rate[smooth], rate[idx][smooth], atol=3e-3)
        assert np.all(np.abs(clip.ego.yaw_rate - rate[idx]) <= jump[idx] + 3e-3)
        frames += int(smooth.sum())
        names = {k: VOCAB[k][v] for k, v in zip(VOCAB, clip.labels.as_array())}
        assert names == truth.labels
    assert frames > 30
    assert np.median(np.concatenate(speed_errors)) < 0.002  # m/s


def test_synthetic_splits_are_seeded_and_complete(synth: Path) -> None:
    train = NuScenesClips(synth, "v1.0-synth", frames=4, fps=3.0, size=(32, 64), split="train")
    val = NuScenesClips(synth, "v1.0-synth", frames=4, fps=3.0, size=(32, 64), split="val")
    everything = NuScenesClips(synth, "v1.0-synth", frames=4, fps=3.0, size=(32, 64))
    assert len(train) + len(val) == len(everything) and len(val) > 0 and len(train) > 0
