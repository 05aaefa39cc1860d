"""`drivesim demo` end to end on a micro cascade trained for a few steps and shipped by the ship tool;
its clear failures; and (slow) the real demo on the packaged cascade at reduced length."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch
from train_fixtures import REPO, render_world, train_args

from drivesim.cli import main
from drivesim.demo import packaged_cascade
from drivesim.metrics.protocol import load_protocol
from drivesim.training.ship import ship

OUTPUTS = {"video.mp4", "overlay.mp4", "side_by_side.mp4", "contact_sheet.png", "conditions.jsonl", "run.json",
           "metrics.json", "synth"}


@pytest.fixture(scope="module")
def cascade(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A micro chain trained 2 steps per stage, shipped as a cascade folder (interpolation included)."""
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("demo_chain")
    world, cache = render_world(base / "world", scenes=2, seconds=4.0), base / "cache"
    assert main(train_args("autoencoder", world, base / "ae", cache, 2)) == 0
    assert main(train_args("image", world, base / "img", cache, 2, f"model.vae={base / 'ae' / 'export'}")) == 0
    assert main(train_args("prediction", world, base / "pred", cache, 2,
                           f"model.pretrained={base / 'img' / 'export'}")) == 0
    assert main(train_args("interpolation", world, base / "itp", cache, 2, "data.fps=12",
                           f"model.pretrained={base / 'img' / 'export'}")) == 0
    ship([base / "pred", base / "itp"], base / "cascade", fp16=True)
    return base / "cascade"


@pytest.fixture()
def no_metric_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIVESIM_METRIC_WEIGHTS", str(tmp_path / "no-weights"))


def _frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])]


def test_demo_end_to_end_on_a_shipped_micro_cascade(cascade: Path, tmp_path: Path, no_metric_weights: None,
                                                     capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "demo"
    assert main(["demo", f"cascade={cascade}", "seconds=2", f"out={out}", "sampler.steps=2",
                 "interpolation_sampler.steps=2"]) == 0
    printed = capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == OUTPUTS  # exactly these (the resume state is gone)
    assert "real-time factor" in printed and str(out / "side_by_side.mp4") in printed
    run = json.loads((out / "run.json").read_text())
    protocol = load_protocol("synth-bench-v1")
    demo = run["demo"]
    training_seeds = {int(s) for s in re.findall(r"seed=(\d+)", (REPO / "scripts" / "train_demo.sh").read_text())}
    assert training_seeds and demo["scene_seed"] in protocol.held_out_seeds
    assert demo["scene_seed"] not in training_seeds  # the recipe's world is never the demo's scene
    assert demo["missing_stages"] == [] and run["fps"] == 12.0 and run["frames"] == 24
    assert demo["realtime_factor"] > 0 and demo["interpolation_sampler"]["steps"] == 2
    # The context is the scene's first two rendered key frames (3 Hz), as the replay engine read them.
    assert run["given_context"]["timestamps"] == pytest.approx([0.0, 1 / 3], abs=1e-3)
    assert run["config"]["scenario"]["replay"]["scene"] == demo["scene"]
    video, side = _frames(out / "video.mp4"), _frames(out / "side_by_side.mp4")
    assert len(video) == len(side) == 24
    h, w = video[0].shape[:2]
    assert (h, w) == (64, 128) and side[0].shape[:2] == (h, 2 * w)
    # The left half is the rendered scene at the generated frames' times: output frame 0 is 5/12 s in.
    sweeps = sorted((out / "synth" / "sweeps" / "CAM_FRONT").glob("*.jpg")) + sorted(
        (out / "synth" / "samples" / "CAM_FRONT").glob("*.jpg"))
    assert sweeps, "the scene is rendered under out/synth"
    assert len((out / "conditions.jsonl").read_text().splitlines()) == 24
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["protocol"]["name"] == "synth-bench-v1" and metrics["protocol"]["fps"] == 12.0
    for name in ("temporal_warp", "temporal_flow"):
        assert np.isfinite(metrics["metrics"][name]["value"]) and metrics["metrics"][name]["n"] > 0
    # Metrics whose network weights are absent are listed, never faked.
    assert set(metrics["unavailable"]) == {"fid_synth", "fvd_synth", "layout", "action"}
    assert not any(k.startswith(("fid_synth", "fvd_synth", "layout", "action")) for k in metrics["metrics"])
    # Killed after two chunks and run again: it resumes, and gives the same video (same seed, same config).
    import drivesim.pipelines.engine as engine

    run_chunk, ran = engine.Engine.run_chunk, []

    def killed_at_2(self, chunk, *args):  # type: ignore[no-untyped-def]
        if chunk.index == 2 and not ran.count("resumed"):
            raise KeyboardInterrupt
        ran.append(chunk.index)
        return run_chunk(self, chunk, *args)

    monkeypatch.setattr(engine.Engine, "run_chunk", killed_at_2)
    again = tmp_path / "again"
    args = ["demo", f"cascade={cascade}", "seconds=2", f"out={again}", "sampler.steps=2",
            "interpolation_sampler.steps=2", "metrics=[temporal]"]
    with pytest.raises(KeyboardInterrupt):
        main(args)
    assert (again / ".rollout" / "state.json").is_file() and ran == [0, 1]
    ran.append("resumed")
    assert main(args) == 0
    chunks = json.loads((again / "run.json").read_text())["chunks"]
    assert chunks > 2 and ran[3:] == list(range(2, chunks))  # chunks 0 and 1 were not redone
    assert all(np.array_equal(a, b) for a, b in zip(video, _frames(again / "video.mp4")))


def test_side_by_side_left_half_is_the_rendered_scene(cascade: Path, tmp_path: Path, no_metric_weights: None,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import drivesim.pipelines.engine as engine

    calls: list[tuple[int, int]] = []  # (frames, steps) of every diffusion call
    real_sample = engine.sample_video

    def spy(denoiser, scheduler, noise, cond, steps, *args):  # type: ignore[no-untyped-def]
        calls.append((int(noise.shape[1]), int(steps)))
        return real_sample(denoiser, scheduler, noise, cond, steps, *args)

    monkeypatch.setattr(engine, "sample_video", spy)
    out = tmp_path / "d"
    assert main(["demo", f"cascade={cascade}", "seconds=1", f"out={out}", "sampler.steps=1",
                 "interpolation_sampler.steps=3", "metrics=[temporal]"]) == 0
    # Prediction windows take sampler.steps, interpolation windows (9 frames) their own sampler's.
    itp_frames = json.loads((cascade / "interpolation" / "drivesim_export.json").read_text())["data"]["frames"]
    assert {steps for frames, steps in calls if frames == itp_frames} == {3}
    assert {steps for frames, steps in calls if frames != itp_frames} == {1}
    side = _frames(out / "side_by_side.mp4")
    # Output frame 0 sits at 1/12 s after the second context key (1/3 s): the scene's 6th sweep (5/12 s).
    frames = sorted((out / "synth" / "sweeps" / "CAM_FRONT").glob("*.jpg"))
    frames += sorted((out / "synth" / "samples" / "CAM_FRONT").glob("*.jpg"))
    by_time = sorted(frames, key=lambda p: int(p.stem.split("__")[-1]))
    rendered = cv2.cvtColor(cv2.imread(str(by_time[5])), cv2.COLOR_BGR2RGB)
    expected = cv2.resize(rendered, (128, 64), interpolation=cv2.INTER_AREA).astype(float)
    wrong = cv2.resize(cv2.cvtColor(cv2.imread(str(by_time[0])), cv2.COLOR_BGR2RGB), (128, 64),
                       interpolation=cv2.INTER_AREA).astype(float)
    left = side[0][:, :128].astype(float)
    assert np.abs(left - expected).mean() < np.abs(left - wrong).mean()
    assert np.abs(left - expected).mean() < 12  # H.264 and the caption


def test_a_cascade_without_interpolation_runs_at_the_key_rate_or_exits_2(
        cascade: Path, tmp_path: Path, no_metric_weights: None, capsys: pytest.CaptureFixture[str]) -> None:
    partial = tmp_path / "partial"
    shutil.copytree(cascade, partial)
    shutil.rmtree(partial / "interpolation")
    strict = ["demo", f"cascade={partial}", "seconds=2", f"out={tmp_path / 'strict'}", "sampler.steps=1",
              "allow_missing_interpolation=false"]
    assert main(strict) == 2
    err = capsys.readouterr().err
    assert "no interpolation export" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "strict").exists()
    out = tmp_path / "keyrate"
    assert main(["demo", f"cascade={partial}", "seconds=2", f"out={out}", "sampler.steps=1",
                 "metrics=[temporal]"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["fps"] == 3.0 and run["frames"] == 6 and run["demo"]["missing_stages"] == ["interpolation"]
    assert "key rate" in run["demo"]["note"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["protocol"]["fps"] == 3.0 and "not comparable" in metrics["protocol"]["description"]


def test_init_strength_reaches_each_stage_and_is_checked(cascade: Path, tmp_path: Path, no_metric_weights: None,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    import drivesim.pipelines.engine as engine

    calls: list[tuple[int, float, bool]] = []  # (frames, strength, guess given) of every diffusion call
    real_sample = engine.sample_video

    def spy(denoiser, scheduler, noise, cond, steps, given=None, gen=None, init=None, strength=1.0):  # type: ignore[no-untyped-def]
        calls.append((int(noise.shape[1]), float(strength), init is not None))
        return real_sample(denoiser, scheduler, noise, cond, steps, given, gen, init, strength)

    monkeypatch.setattr(engine, "sample_video", spy)
    args = ["demo", f"cascade={cascade}", "seconds=1", "sampler.steps=2", "interpolation_sampler.steps=2",
            "metrics=[temporal]", "sampler.init_strength=0.5", "interpolation_sampler.init_strength=0.25"]
    assert main([*args, f"out={tmp_path / 'd'}"]) == 0
    itp_frames = json.loads((cascade / "interpolation" / "drivesim_export.json").read_text())["data"]["frames"]
    assert {(s, g) for f, s, g in calls if f == itp_frames} == {(0.25, True)}
    assert {(s, g) for f, s, g in calls if f != itp_frames} == {(0.5, True)}
    capsys.readouterr()
    assert main([*args[:-1], "interpolation_sampler.init_strength=0", f"out={tmp_path / 'bad'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "init_strength must lie in (0, 1]" in err


def test_ego_warp_init_reaches_both_stages_and_is_checked(cascade: Path, tmp_path: Path, no_metric_weights: None,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """`init_guess=ego_warp` changes the SDEdit start of the frames to generate (not the given ones) in the
    prediction and the interpolation calls; an unknown guess is one line naming the field, exit 2."""
    import drivesim.pipelines.ego_warp as ego_warp
    import drivesim.pipelines.engine as engine
    from drivesim.diffusion.sampling import context_init

    moved: list[tuple[int, float, float]] = []  # (frames, max |init - plain guess| on free / given frames)
    real_sample = engine.sample_video

    def spy(denoiser, scheduler, noise, cond, steps, given=None, gen=None, init=None, strength=1.0):  # type: ignore[no-untyped-def]
        if given is not None and init is not None:
            diff = (init - context_init(given)).abs()
            free = given.mask == 0
            moved.append((int(noise.shape[1]), float(diff[free].max()), float(diff[~free].max())))
        return real_sample(denoiser, scheduler, noise, cond, steps, given, gen, init, strength)

    blends: list[tuple[float, bool]] = []  # (weight, whether the rim the later key never saw came from the earlier)
    real_blend = ego_warp.blend_warps

    def blend_spy(earlier, later, weight):  # type: ignore[no-untyped-def]
        out = real_blend(earlier, later, weight)
        rim = ((later.seen == 0) & (earlier.seen == 1)).expand_as(out)
        blends.append((weight, bool(rim.any()) and torch.equal(out[rim], earlier.frame[rim])))
        return out

    monkeypatch.setattr(engine, "sample_video", spy)
    monkeypatch.setattr(ego_warp, "blend_warps", blend_spy)
    args = ["demo", f"cascade={cascade}", "seconds=2", "sampler.steps=2", "interpolation_sampler.steps=2",
            "metrics=[temporal]", "sampler.init_strength=0.5", "interpolation_sampler.init_strength=0.5",
            "sampler.init_guess=ego_warp"]
    assert main([*args, "interpolation_sampler.init_guess=ego_warp", f"out={tmp_path / 'd'}"]) == 0
    itp_frames = json.loads((cascade / "interpolation" / "drivesim_export.json").read_text())["data"]["frames"]
    kinds = {f == itp_frames for f, _, _ in moved}
    assert kinds == {True, False}  # both stages started from the warp
    assert all(free > 1e-3 and given == 0.0 for _, free, given in moved)
    # Each in-between guess blends its two warped keys where both saw; the replayed drive goes forward, so the
    # later key warped back in time misses a rim, taken whole from the earlier key's warp.
    assert {w for w, _ in blends} == {0.25, 0.5, 0.75}
    assert any(from_earlier for _, from_earlier in blends)
    capsys.readouterr()
    assert main([*args, "interpolation_sampler.init_guess=flow", f"out={tmp_path / 'bad'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "sampler.init_guess must be one of given, ego_warp" in err


def test_colour_anchor_reaches_the_prediction_calls_with_the_first_key(cascade: Path, tmp_path: Path,
                                                                     no_metric_weights: None,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """`sampler.colour_anchor` corrects every warped guess of the prediction calls towards the first given
    key, which the rollout keeps for it through every chunk."""
    import drivesim.pipelines.engine as engine

    strengths: list[float] = []
    band_counts: list[int] = []
    first_keys: list[int] = []
    real_anchor, real_chunk = engine.anchor_colours, engine.Engine.run_chunk

    def anchor_spy(frame, reference, strength, bands=1):  # type: ignore[no-untyped-def]
        strengths.append(strength)
        band_counts.append(bands)
        return real_anchor(frame, reference, strength, bands)

    def chunk_spy(self, chunk, plan, timeline, scene, keys, seed):  # type: ignore[no-untyped-def]
        first_keys.append(min(keys))
        return real_chunk(self, chunk, plan, timeline, scene, keys, seed)

    monkeypatch.setattr(engine, "anchor_colours", anchor_spy)
    monkeypatch.setattr(engine.Engine, "run_chunk", chunk_spy)
    args = ["demo", f"cascade={cascade}", "seconds=4", "sampler.steps=2", "interpolation_sampler.steps=2",
            "metrics=[temporal]", "sampler.init_strength=0.5", "sampler.init_guess=ego_warp"]
    assert main([*args, "sampler.colour_anchor=0.25", f"out={tmp_path / 'a'}"]) == 0
    assert strengths and set(strengths) == {0.25}
    assert set(band_counts) == {4}  # conf/demo.yaml's colour_anchor_bands reaches the anchor
    assert len(first_keys) >= 2 and set(first_keys) == {first_keys[0]} and first_keys[0] < 0  # a given key
    strengths.clear()
    assert main([*args, "sampler.colour_anchor=0.0", f"out={tmp_path / 'b'}"]) == 0
    assert not strengths
    capsys.readouterr()
    assert main([*args, "interpolation_sampler.colour_anchor=0.5", f"out={tmp_path / 'c'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "interpolation_sampler.colour_anchor applies to the prediction" in err
    assert main([*args, "interpolation_sampler.colour_anchor_bands=4", f"out={tmp_path / 'd'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "interpolation_sampler.colour_anchor applies to the prediction" in err


def test_demo_in_bf16_runs_every_stage_in_bf16_close_to_fp32(cascade: Path, tmp_path: Path, no_metric_weights: None,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """`precision=bf16` (the UNets and the autoencoder in bfloat16, the sampler's maths in float32) runs the
    demo's whole path - warps, colour anchor, interpolation, decoding - and stays close to float32."""
    import drivesim.pipelines.engine as engine

    dtypes: set[torch.dtype] = set()
    real_decode = engine.Engine._decode

    def decode_spy(self, latents):  # type: ignore[no-untyped-def]
        stages = (self.prediction, self.image, self.interpolation)
        dtypes.update({self.vae.vae.dtype, *(stage.unet.dtype for stage in stages if stage is not None)})
        return real_decode(self, latents)

    monkeypatch.setattr(engine.Engine, "_decode", decode_spy)
    args = ["demo", f"cascade={cascade}", "seconds=2", "sampler.steps=2", "interpolation_sampler.steps=2",
            "metrics=[temporal]"]
    assert main([*args, "precision=bf16", f"out={tmp_path / 'bf16'}"]) == 0
    assert dtypes == {torch.bfloat16}
    run = json.loads((tmp_path / "bf16" / "run.json").read_text())
    assert run["config"]["precision"] == "bf16" == run["precision"]
    assert main([*args, "precision=fp32", f"out={tmp_path / 'fp32'}"]) == 0
    half, full = (np.stack(_frames(tmp_path / name / "video.mp4")).astype(np.float32) for name in ("bf16", "fp32"))
    assert half.shape == full.shape
    difference = float(np.abs(half - full).mean())
    assert 0.0 < difference < 8.0, difference  # not the same computation, but the same video


def test_noise_correlation_reaches_its_stage_only_and_is_checked(cascade: Path, tmp_path: Path,
                                                                 no_metric_weights: None,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """interpolation_sampler.noise_correlation shapes the interpolation calls' starting noise (frames of a call
    correlate), the prediction calls keep independent frames; a value outside [0, 1) is one line, exit 2."""
    import drivesim.pipelines.engine as engine

    starts: list[torch.Tensor] = []
    real_sample = engine.sample_video

    def spy(denoiser, scheduler, noise, cond, steps, given=None, gen=None, init=None, strength=1.0):  # type: ignore[no-untyped-def]
        starts.append(noise.clone())
        return real_sample(denoiser, scheduler, noise, cond, steps, given, gen, init, strength)

    monkeypatch.setattr(engine, "sample_video", spy)
    args = ["demo", f"cascade={cascade}", "seconds=1", "sampler.steps=1", "interpolation_sampler.steps=1",
            "metrics=[temporal]"]
    assert main([*args, "interpolation_sampler.noise_correlation=0.9", f"out={tmp_path / 'd'}"]) == 0
    itp_frames = json.loads((cascade / "interpolation" / "drivesim_export.json").read_text())["data"]["frames"]

    def mean_frame_correlation(x: torch.Tensor) -> float:
        a, b = x[:, 1].flatten(), x[:, -1].flatten()
        return float(torch.corrcoef(torch.stack([a, b]))[0, 1])

    itp = [n for n in starts if n.shape[1] == itp_frames]
    pred = [n for n in starts if n.shape[1] != itp_frames and n.shape[1] > 1]
    assert itp and pred
    assert min(mean_frame_correlation(n) for n in itp) > 0.6
    assert max(abs(mean_frame_correlation(n)) for n in pred) < 0.4
    capsys.readouterr()
    assert main([*args, "interpolation_sampler.noise_correlation=1.0", f"out={tmp_path / 'bad'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "noise_correlation must lie in [0, 1)" in err


def test_no_shipped_cascade_is_one_line_and_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import drivesim.demo.run as demo_run

    monkeypatch.setattr(demo_run, "packaged_cascade", lambda: tmp_path / "absent")
    assert main(["demo", f"out={tmp_path / 'out'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no cascade is shipped" in err and "drivesim.training.ship" in err
    assert not (tmp_path / "out").exists()
    assert main(["demo", f"cascade={tmp_path / 'nope'}", f"out={tmp_path / 'out'}"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["demo", "seconds=0", f"cascade={tmp_path}"]) == 2


def test_the_packaged_cascade_is_package_data() -> None:
    assert packaged_cascade().parent.name == "assets" and packaged_cascade().parent.parent.name == "drivesim"


@pytest.mark.slow
def test_real_demo_at_reduced_length(tmp_path: Path) -> None:
    """The packaged tiny cascade, 6 s: every output, and about 0.3 s per output frame at most (2 cores)."""
    if not packaged_cascade().is_dir():
        pytest.skip(f"no cascade shipped at {packaged_cascade()} yet")
    torch.set_num_threads(2)
    out = tmp_path / "demo"
    assert main(["demo", "seconds=6", f"out={out}"]) == 0
    assert {p.name for p in out.iterdir()} == OUTPUTS
    run = json.loads((out / "run.json").read_text())
    assert run["frames"] == round(6 * run["fps"]) and run["seconds_per_output_frame"] < 0.5
    metrics = json.loads((out / "metrics.json").read_text())
    assert "temporal_warp" in metrics["metrics"] and metrics["protocol"]["name"] == "synth-bench-v1"


def test_generate_takes_the_interpolation_sampler_as_a_sampler_node(cascade: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    args = ["generate", f"checkpoint={cascade}", f"out={tmp_path / 'g'}", "seconds=0.5"]
    assert main([*args, "interpolation_sampler=ddim"]) == 2
    assert "sampler@interpolation_sampler=ddim" in capsys.readouterr().err
    assert main([*args, "sampler@interpolation_sampler=ddim", "interpolation_sampler.steps=2", "sampler.steps=1"]) == 0
    run = json.loads((tmp_path / "g" / "run.json").read_text())
    assert run["config"]["interpolation_sampler"]["steps"] == 2


def test_demo_measures_the_synthetic_metrics_when_their_weights_exist(cascade: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from metrics_fixtures import train_tiny_weights

    from drivesim.metrics import suite

    monkeypatch.setenv("DRIVESIM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DRIVESIM_METRIC_WEIGHTS", str(train_tiny_weights(tmp_path / "nets", validate=True)))
    monkeypatch.setattr(suite, "ACTION_MIN_R2", float("-inf"))  # test-size weights cannot read motion
    out = tmp_path / "demo"
    assert main(["demo", f"cascade={cascade}", "seconds=3", f"out={out}", "sampler.steps=1",
                 "interpolation_sampler.steps=1"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    measured = {name.split("_")[0] if name.startswith(("layout", "temporal", "action")) else name
                for name in report["metrics"]}
    assert {"layout", "temporal", "action"} <= measured
    assert measured | set(report["unavailable"]) == {"fid_synth", "fvd_synth", "layout", "temporal", "action"}
    assert not measured & set(report["unavailable"])
    for name in ("layout_recall", "action_speed", "action_yaw_rate"):
        assert report["metrics"][name]["n"] > 0
    assert report["protocol"]["extractors"]["layout"]["name"] == "layout-seg-v1"
    assert report["protocol"]["extractors"]["attributes"]["name"] == "synth-attr-v3"


def test_the_shipped_cascade_is_complete_linked_and_within_budget() -> None:
    from drivesim.exports import find_cascade

    cascade = packaged_cascade()
    if not cascade.is_dir():
        pytest.skip(f"no cascade shipped at {cascade} yet")
    stages = find_cascade(cascade)
    assert {"autoencoder", "image", "temporal", "interpolation"} <= set(stages)
    for exp in stages.values():
        for role in exp.parents:
            exp.check_parent(role)  # relative links inside the cascade, digests intact
            assert cascade.resolve() in exp.parent_path(role).resolve().parents  # type: ignore[union-attr]
    files = [p for p in cascade.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 50 * 2**20
    assert not [p for p in files if p.suffix in (".ckpt", ".pt") or "cache" in p.parts]
