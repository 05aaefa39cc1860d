"""benchmarks/synth_bench.py at tiny scale: every method written in generate format, measured, tabled."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from generate_fixtures import write_micro_exports

from drivesim.metrics.protocol import load_protocol
from drivesim.training.ship import ship

REPO = Path(__file__).resolve().parents[1]


def _bench_module():
    spec = importlib.util.spec_from_file_location("synth_bench", REPO / "benchmarks" / "synth_bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["synth_bench"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_synth_bench_tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.set_num_threads(1)
    monkeypatch.setenv("DRIVESIM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DRIVESIM_METRIC_WEIGHTS", str(tmp_path / "no-weights"))
    write_micro_exports(tmp_path / "exports", interpolation=True)
    ship([tmp_path / "exports"], tmp_path / "cascade")
    bench = _bench_module()
    real_replay = bench.replay_drive
    out = tmp_path / "results" / "synth_bench"
    args = ["--cascade", str(tmp_path / "cascade"), "--set", "held_out_seeds=[90002]", "render.scenes=1",
            "render.seconds=3", "clip_frames=8", "--metrics", "temporal", "fid_synth",
            "--demo", "sampler.steps=1", "interpolation_sampler.steps=1", "--work", str(tmp_path / "work"),
            "--out", str(out)]
    code = bench.main(args)
    assert code == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert set(report["methods"]) == {"real", "autoencoder", "copy_last_frame", "image_model", "cascade"}
    assert report["drives"] == 1 and report["protocol"]["held_out_seeds"] == [90002]
    assert report["protocol"]["clip_frames"] == 8  # overrides are in the record
    frames = round(report["seconds_of_video"] * report["fps"])
    for method in report["methods"]:
        run = next((tmp_path / "work" / method).glob("*/run.json"))
        assert len((run.parent / "conditions.jsonl").read_text().splitlines()) == frames, method
    m = {k: v["metrics"] for k, v in report["methods"].items()}
    # The floor is another seed's drive rendered the same way (never the held-out frames themselves).
    assert [p.name for p in (tmp_path / "work" / "real").iterdir() if p.is_dir()] == ["seed-90102-synth-0000"]
    assert m["copy_last_frame"]["temporal_flow"]["generated"] < 1e-3  # a held frame has no motion at all
    assert m["real"]["temporal_flow"]["value"] < m["copy_last_frame"]["temporal_flow"]["value"]
    assert report["targets"]["temporal_warp_beats_copy_last_frame"] in (True, False)
    assert report["targets"]["closes_half_fvd_synth_gap_to_autoencoder"] is None  # fvd_synth not measured
    assert "fid_synth" in report["methods"]["cascade"]["unavailable"]  # no weights: listed, never faked
    table = out.with_suffix(".md").read_text()
    assert "| cascade |" in table and "| image_model |" in table and "n/a" in table
    took = report["invocation_seconds"]  # this run's own wall clock, generation beside scoring
    assert took["generate"] > 0 and took["score"] > 0 and "This invocation:" in table
    assert load_protocol("synth-bench-v1").held_out_seeds != [90002]  # the shipped protocol is untouched
    # A rerun resumes: nothing is generated again and the table is the same.
    monkeypatch.setattr(bench, "replay_drive", lambda *a, **k: pytest.fail("a finished drive was generated again"))
    assert bench.main(args) == 0
    again = json.loads(out.with_suffix(".json").read_text())
    assert again["methods"]["cascade"]["metrics"] == report["methods"]["cascade"]["metrics"]
    assert again["wall_seconds"] == report["wall_seconds"] and report["wall_seconds"]["cascade"] > 0
    # A scoring setting changes no video: the rerun keeps them (and measures again, under the new protocol).
    monkeypatch.setattr(bench, "replay_drive", lambda *a, **k: pytest.fail("videos were regenerated"))
    measured: list[str] = []
    real_measure = bench.measure
    monkeypatch.setattr(bench, "measure", lambda folder, *a, **k: measured.append(folder.name) or real_measure(folder, *a, **k))
    args4 = [*args[:args.index("clip_frames=8")], "clip_frames=4", *args[args.index("clip_frames=8") + 1:]]
    assert bench.main(args4) == 0
    assert sorted(measured) == sorted(report["methods"])
    # Another interpolation model: only the cascade's drives are generated and measured again; the baselines
    # (floor, copy-last, autoencoder, image model) keep their videos and scores.
    shutil.copytree(tmp_path / "cascade", tmp_path / "cascade2")
    (tmp_path / "cascade2" / "interpolation" / "retrained.json").write_text("{}\n")  # another weight digest
    replayed: list[str] = []
    monkeypatch.setattr(bench, "replay_drive", lambda *a, **k: replayed.append(a[3]) or real_replay(*a, **k))
    monkeypatch.setattr(bench, "_autoencoder", lambda *a, **k: pytest.fail("the autoencoder baseline was redone"))
    monkeypatch.setattr(bench, "_image_model", lambda *a, **k: pytest.fail("the image-model baseline was redone"))
    measured.clear()
    assert bench.main(["--cascade", str(tmp_path / "cascade2"), *args4[2:]]) == 0
    assert replayed == ["synth-0000"] and measured == ["cascade"]
    other = json.loads(out.with_suffix(".json").read_text())
    assert other["methods"]["autoencoder"]["metrics"]["temporal_warp"]["n"] > 0
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert bench.main(["--cascade", str(tmp_path / "cascade"), "--work", str(mine), "--out", str(out)]) == 2
    assert (mine / "notes.txt").is_file()  # --work is emptied only when it holds a benchmark's videos


def test_image_model_stamp_ignores_prediction_only_sampler_fields() -> None:
    """The image-model baseline reads steps, guidance (no context) and the scheduler settings of the demo's
    prediction sampler: a change of context guidance, SDEdit strength or frame correlation keeps its videos."""
    bench = _bench_module()
    base = {"name": "ddim", "steps": 8, "eta": 0.0, "timestep_spacing": "trailing", "guidance_mode": "composed",
            "max_batch": 0, "guidance": {"boxes": 2.0, "context": 1.0}, "init_strength": 1.0,
            "noise_correlation": 0.0, "context_noise_level": None}
    same = {**base, "guidance": {"boxes": 2.0, "context": 2.0}, "init_strength": 0.5, "noise_correlation": 0.9,
            "context_noise_level": 0.1}
    assert bench.image_sampler_stamp(same) == bench.image_sampler_stamp(base)
    for changed in ({"steps": 10}, {"guidance": {"boxes": 3.0}}, {"eta": 1.0}, {"guidance_mode": "nested"}):
        assert bench.image_sampler_stamp({**base, **changed}) != bench.image_sampler_stamp(base), changed
