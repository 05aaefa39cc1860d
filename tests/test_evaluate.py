"""`drivesim evaluate` and `evaluate_folder` end to end on a tiny synthetic render, with generate-format
folders made from its clips (the real clips themselves and a copy-last-frame baseline)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from metrics_fixtures import TinyImageNet, render_tiny_synth, save_scripted, train_tiny_weights

from drivesim.cli import main
from drivesim.metrics import evaluate_folder, load_protocol
from drivesim.metrics.baselines import baseline_frames, write_generated_folder
from drivesim.metrics.protocol import RECORD_KEYS, protocol_names
from drivesim.metrics.real import real_from_data
from drivesim.metrics.videos import find_videos, load_video

CLIP = 8


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("eval")
    synth = render_tiny_synth(root / "synth")
    protocol = replace(load_protocol("synth-bench-v1"), clip_frames=CLIP)
    seq, _ = real_from_data({"name": "synthetic", "root": str(synth), "version": "v1.0-synth"}, protocol)
    videos = list(seq)
    paths = {"synth": synth, "tiny": save_scripted(TinyImageNet(), root / "tiny.pt")}
    for kind in ("real", "copy_last_frame"):
        for i, v in enumerate(videos[:2]):
            write_generated_folder(root / kind / f"seed-{i}", v, baseline_frames(v, kind), {"seed": i})
        paths[kind] = root / kind
    return paths


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DRIVESIM_CACHE", str(tmp_path / "cache"))


def _cli(world: dict[str, Path], generated: str, out: Path, *extra: str) -> int:
    return main(["evaluate", f"generated={world[generated]}", "data=synthetic", f"data.root={world['synth']}",
                 "protocol.split=null", f"protocol.clip_frames={CLIP}", f"out={out}", *extra])


def test_generated_folders_read_back_with_their_conditions(world: dict[str, Path]) -> None:
    paths = find_videos(world["real"])
    assert [p.name for p in paths] == ["video.mp4", "video.mp4"]
    video = load_video(paths[0], (128, 256))
    assert video.frames.shape == (CLIP, 3, 128, 256) and video.fps == 12.0
    assert video.conditions is not None and video.conditions[0].boxes and video.conditions[0].ego_speed > 0


def test_cli_writes_metrics_summary_plots_and_a_complete_protocol(world: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _cli(world, "copy_last_frame", out, "metrics=[temporal,fid]", f"inception={world['tiny']}") == 0
    report = json.loads((out / "metrics.json").read_text())
    assert set(report["metrics"]) == {"fid", "temporal_warp", "temporal_flow"}
    for entry in report["metrics"].values():
        assert isinstance(entry["value"], float) and entry["n"] > 0
    protocol = report["protocol"]
    assert set(RECORD_KEYS) <= set(protocol)
    assert protocol["clip_frames"] == CLIP and protocol["generated"]["videos"] == 2
    assert protocol["extractors"]["fid"]["extractor"]["sha256"] and protocol["real"]["source"] == "data"
    assert protocol["real"]["frames_read"] == protocol["real"]["clips"] * CLIP  # read on demand, counted
    assert (out / "summary.md").read_text().startswith("# Evaluation under protocol `synth-bench-v1`")
    assert (out / "temporal_flow.png").stat().st_size > 0
    # a frozen video is far from real motion; the real clips themselves are close to it
    frozen = report["metrics"]["temporal_flow"]["value"]
    real = evaluate_folder(world["real"], data={"name": "synthetic", "root": str(world["synth"])},
                           protocol=replace(load_protocol("synth-bench-v1"), clip_frames=CLIP, split=None),
                           metrics=["temporal"])
    assert real["metrics"]["temporal_flow"]["value"] < 0.2 < frozen
    assert set(real) == {"protocol", "metrics", "unavailable", "seconds"} and set(real["seconds"]) == {"temporal"}


def test_real_side_features_are_cached(world: dict[str, Path], tmp_path: Path) -> None:
    kwargs = dict(data={"name": "synthetic", "root": str(world["synth"])}, metrics=["fid"], inception=str(world["tiny"]),
                  protocol=replace(load_protocol("synth-bench-v1"), clip_frames=CLIP, split=None))
    first = evaluate_folder(world["real"], **kwargs)
    second = evaluate_folder(world["copy_last_frame"], **kwargs)
    assert not first["metrics"]["fid"]["real_cached"] and second["metrics"]["fid"]["real_cached"]
    assert second["metrics"]["fid"]["n_real"] == first["metrics"]["fid"]["n_real"]


def test_the_real_side_of_groups_without_a_feature_cache_is_computed_once_per_process(world) -> None:
    from drivesim.metrics import suite

    suite._REAL_MEMO.clear()
    kwargs = dict(data={"name": "synthetic", "root": str(world["synth"])}, metrics=["temporal"],
                  protocol=replace(load_protocol("synth-bench-v1"), clip_frames=CLIP, split=None))
    first = evaluate_folder(world["real"], **kwargs)
    second = evaluate_folder(world["copy_last_frame"], **kwargs)
    assert first["protocol"]["real"]["frames_read"] > 0 and second["protocol"]["real"]["frames_read"] == 0
    assert second["metrics"]["temporal_warp"]["real"] == first["metrics"]["temporal_warp"]["real"]
    assert second["metrics"]["temporal_flow"]["value"] > first["metrics"]["temporal_flow"]["value"]
    uncached = evaluate_folder(world["copy_last_frame"], cache=False, **kwargs)  # no identity: never reused
    assert uncached["protocol"]["real"]["frames_read"] > 0


def test_real_clips_are_loaded_once_per_process_and_reloaded_when_the_dataset_changes(world, tmp_path) -> None:
    import shutil

    from drivesim.metrics import real

    real.LOADED_CLIPS.items.clear()
    real.LOADED_CLIPS.bytes = 0
    protocol = replace(load_protocol("synth-bench-v1"), clip_frames=CLIP, split=None)
    copy = tmp_path / "synth"
    shutil.copytree(world["synth"], copy)
    data = {"name": "synthetic", "root": str(copy), "version": "v1.0-synth"}
    before = real.LOADED_CLIPS.loads
    first = [v.frames.clone() for v in real_from_data(data, protocol)[0]]
    loads = real.LOADED_CLIPS.loads - before
    assert loads == len(first) > 0
    again = list(real_from_data(data, protocol)[0])  # another evaluation (a new dataset object): no loading
    assert real.LOADED_CLIPS.loads - before == loads
    assert all(torch.equal(a.frames, b) for a, b in zip(again, first))
    assert real.LOADED_CLIPS.bytes == sum(int(f.numel()) for f in first)
    image = next(p for p in sorted(copy.rglob("*.jpg")))
    image.write_bytes(image.read_bytes())  # same bytes, a new modification time: another dataset identity
    list(real_from_data(data, protocol)[0])
    assert real.LOADED_CLIPS.loads - before == 2 * loads
    small = real.LoadedClips(limit=int(first[0].numel()))  # room for one clip: the older one goes
    for k in range(2):
        small.get(f"k{k}", lambda k=k: again[k])
    assert list(small.items) == ["k1"] and small.bytes == int(first[1].numel())


def test_an_asked_metric_without_its_weights_exits_2_naming_file_and_command(world, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("DRIVESIM_METRIC_WEIGHTS", str(tmp_path / "none"))
    assert _cli(world, "real", tmp_path / "out", "metrics=[layout]") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "layout-seg-v1.safetensors" in err and "python -m drivesim.metrics.nets.train layout" in err
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_default_metrics_list_what_could_not_run(world, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DRIVESIM_METRIC_WEIGHTS", str(tmp_path / "none"))
    monkeypatch.setenv("DRIVESIM_INCEPTION", str(world["tiny"]))
    monkeypatch.delenv("DRIVESIM_I3D", raising=False)
    report = evaluate_folder(world["real"], data={"name": "synthetic", "root": str(world["synth"])},
                             protocol=replace(load_protocol("synth-bench-v1"), clip_frames=CLIP, split=None))
    assert {"fid", "temporal_warp"} <= set(report["metrics"])
    assert set(report["unavailable"]) == {"fvd", "fid_synth", "fvd_synth", "layout", "action"}
    assert "i3d" in report["unavailable"]["fvd"]


def test_layout_action_and_synthetic_frechet_run_with_weights(world, tmp_path, monkeypatch) -> None:
    from drivesim.metrics import suite

    monkeypatch.setenv("DRIVESIM_METRIC_WEIGHTS", str(train_tiny_weights(tmp_path / "nets", validate=True)))
    protocol = replace(load_protocol("synth-bench-v1"), clip_frames=CLIP, split=None)
    data = {"name": "synthetic", "root": str(world["synth"])}
    # A few steps of training cannot read ego motion: action adherence is refused, never reported from noise.
    with pytest.raises(suite.Unavailable, match="reads ego motion too poorly.*R2 speed"):
        evaluate_folder(world["real"], data=data, protocol=protocol, metrics=["action"])
    monkeypatch.setattr(suite, "ACTION_MIN_R2", float("-inf"))
    report = evaluate_folder(world["real"], data={"name": "synthetic", "root": str(world["synth"])},
                             protocol=replace(load_protocol("synth-bench-v1"), clip_frames=CLIP, split=None),
                             metrics=["layout", "action", "fid_synth", "fvd_synth"], out=tmp_path / "out")
    m = report["metrics"]
    assert {"layout_recall", "layout_hallucinated_area", "action_speed", "action_yaw_rate", "fid_synth", "fvd_synth"} <= set(m)
    assert m["layout_recall"]["n"] > 0 and isinstance(m["layout_recall"]["detector_trusted"], bool)
    assert report["protocol"]["extractors"]["layout"]["name"] == "layout-seg-v1"
    assert report["protocol"]["extractors"]["attributes"]["name"] == "synth-attr-v3"


def test_protocols_load_and_bad_ones_are_named(world) -> None:
    assert {"synth-bench-v1", "nuscenes-front-16f"} <= set(protocol_names())
    for name in protocol_names():
        assert load_protocol(name).name == name
    nus = load_protocol("nuscenes-front-16f")
    assert nus.clip_frames == 16 and nus.split == "val" and not nus.count_context and nus.context_frames >= 1
    with pytest.raises(ValueError, match="unknown protocol 'nope'"):
        load_protocol("nope")
    with pytest.raises(ValueError, match="data=<config> or real=<folder>"):
        evaluate_folder(world["real"], protocol="nuscenes-front-16f", metrics=["temporal"])
    with pytest.raises(ValueError, match="not both"):
        evaluate_folder(world["real"], real=world["real"], data={"name": "synthetic"}, metrics=["temporal"])


def test_a_synthetic_protocol_without_real_data_renders_its_held_out_seeds(world, tmp_path: Path) -> None:
    protocol = replace(load_protocol("synth-bench-v1"), clip_frames=CLIP, held_out_seeds=[90001],
                       render=replace(load_protocol("synth-bench-v1").render, scenes=1, seconds=1.0))
    report = evaluate_folder(world["real"], protocol=protocol, metrics=["temporal"])
    real = report["protocol"]["real"]
    assert real["source"] == "synthetic held-out seeds" and real["seeds"] == [90001] and real["clips"] == 1
    assert Path(real["roots"][0]).is_relative_to(tmp_path / "cache")


def test_too_few_counted_samples_is_an_error_when_asked_and_listed_otherwise(world) -> None:
    from drivesim.metrics.suite import Unavailable

    all_context = replace(load_protocol("synth-bench-v1"), clip_frames=CLIP, split=None, context_frames=CLIP)
    kwargs = dict(data={"name": "synthetic", "root": str(world["synth"])}, inception=str(world["tiny"]),
                  protocol=all_context)
    with pytest.raises(Unavailable, match="fid: 0 real sample"):
        evaluate_folder(world["real"], metrics=["fid"], **kwargs)
    with pytest.raises(Unavailable, match="temporal"):
        evaluate_folder(world["real"], metrics=["temporal"], **kwargs)


def test_frame_metrics_take_every_kth_counted_frame_on_both_sides() -> None:
    import numpy as np

    from drivesim.metrics.suite import frame_units
    from drivesim.metrics.videos import EvalVideo

    frames = torch.arange(14, dtype=torch.uint8).view(14, 1, 1, 1).expand(14, 3, 2, 2).contiguous()
    video = EvalVideo("v", frames, 12.0)
    protocol = replace(load_protocol("synth-bench-v1"), context_frames=2, fid_frame_stride=6)
    (unit,) = list(frame_units([video], protocol))
    assert unit.data[:, 0, 0, 0].tolist() == [2, 8]  # context left out, then every 6th frame
    assert np.allclose(unit.times, (np.array([0, 6]) + 0.5) / 12.0)
    # Clips of one side: the count runs on, so 16-frame clips give every 6th frame too (not 3 of each 16).
    clips = [EvalVideo(f"c{k}", torch.arange(16 * k, 16 * k + 16, dtype=torch.uint8).view(16, 1, 1, 1)
                       .expand(16, 3, 2, 2).contiguous(), 12.0) for k in range(3)]
    units = list(frame_units(clips, replace(protocol, context_frames=0)))
    assert [v for u in units for v in u.data[:, 0, 0, 0].tolist()] == list(range(0, 48, 6))
    assert np.allclose(units[1].times, (np.array([2, 8, 14]) + 0.5) / 12.0)  # times within each clip
    assert load_protocol("synth-bench-v1").fid_frame_stride == 6  # the "FID on every 6th frame"
    with pytest.raises(ValueError, match="fid_frame_stride"):
        list(frame_units([video], replace(protocol, fid_frame_stride=0)))


def test_layout_scores_every_kth_counted_frame_on_both_sides(monkeypatch) -> None:
    """`layout_frame_stride`: the detector sees every k-th counted frame, the count running on across clips."""
    from drivesim.metrics import suite
    from drivesim.metrics.videos import CondBox, EvalVideo, FrameCond, VideoSeq

    seen: list[int] = []

    def detector(frames: torch.Tensor) -> torch.Tensor:  # labels the box region of frames with an even id
        seen.extend(frames[:, 0, 0, 0].tolist())
        labels = torch.zeros(frames.shape[0], 32, 32, dtype=torch.long)
        labels[frames[:, 0, 0, 0] % 2 == 0, 4:28, 4:28] = 1
        return labels

    def video(first: int, n: int) -> EvalVideo:
        frames = torch.zeros(n, 3, 32, 32, dtype=torch.uint8)
        frames[:, 0, 0, 0] = torch.arange(first, first + n, dtype=torch.uint8)
        box = (CondBox("a", "car", (4.0, 4.0, 28.0, 28.0)),)
        return EvalVideo(f"v{first}", frames, 12.0, [FrameCond(i / 12.0, boxes=box) for i in range(n)])

    def fake_detector(opts: suite.SuiteOptions, out: suite.SuiteResult):
        out.extractors["layout"] = {"name": "fake"}
        return detector

    monkeypatch.setattr(suite, "_detector", fake_detector)
    proto = replace(load_protocol("synth-bench-v1"), size=[32, 32], context_frames=1, layout_frame_stride=3)
    gen = VideoSeq([lambda: video(0, 12)])
    real = VideoSeq([lambda k=k: video(100 + 8 * k, 8) for k in range(3)])
    out = suite.SuiteResult()
    suite._layout(gen, real, suite.SuiteOptions(proto, batch_size=4), out)
    # generated: counted frames 1..11, every 3rd -> 1, 4, 7, 10; real clips of 8 (7 counted each) -> the count runs on
    assert seen[:4] == [1, 4, 7, 10]
    assert seen[4:] == [101, 104, 107, 111, 114, 118, 121]
    assert out.metrics["layout_recall"]["n"] == 4 and out.metrics["layout_recall"]["value"] == 0.5
    assert out.metrics["layout_recall"]["n_real"] == 7
    assert load_protocol("synth-bench-v1").layout_frame_stride == 3
    with pytest.raises(ValueError, match="layout_frame_stride"):
        suite._layout(gen, real, suite.SuiteOptions(replace(proto, layout_frame_stride=0)), suite.SuiteResult())


def test_real_sides_persist_on_disk_keyed_by_content_when_asked(world, tmp_path: Path, monkeypatch) -> None:
    """A folder copied elsewhere (the demo re-renders its scene into out/ every run) keeps a content identity,
    so its real sides come from the disk cache in a new process; an edited file is a new identity."""
    import shutil

    from drivesim.metrics import real, suite

    copy = tmp_path / "copy"
    shutil.copytree(world["synth"], copy)
    proto = replace(load_protocol("synth-bench-v1"), clip_frames=CLIP, split=None)

    def run(root: Path, **extra) -> dict:
        suite._REAL_MEMO.clear()
        real.LOADED_CLIPS.items.clear()
        return evaluate_folder(world["copy_last_frame"], data={"name": "synthetic", "root": str(root)},
                               protocol=proto, metrics=["temporal", "layout"], **extra)

    first = run(world["synth"], data_by_content=True)
    assert first["protocol"]["real"]["frames_read"] > 0
    again = run(copy, data_by_content=True)  # another path, same bytes: nothing real is read
    assert again["protocol"]["real"]["frames_read"] == 0
    for name in ("temporal_warp", "layout_recall"):
        assert again["metrics"][name] == first["metrics"][name]
    assert run(copy)["protocol"]["real"]["frames_read"] > 0  # by path and time: a new identity
    jpeg = next((copy / "samples").rglob("*.jpg"))
    jpeg.write_bytes(jpeg.read_bytes() + b"\0")
    assert run(copy, data_by_content=True)["protocol"]["real"]["frames_read"] > 0
