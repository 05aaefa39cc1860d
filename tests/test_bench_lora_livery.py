"""benchmarks/bench_lora_livery.py end to end on micro exports: every phase runs, figures land, a rerun resumes."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import torch
from train_fixtures import REPO, render_world, train_args

from drivesim.cli import main


def _bench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("bench_lora_livery", REPO / "benchmarks" / "bench_lora_livery.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_livery_pixels_find_the_livery_and_not_the_base_palette() -> None:
    bench = _bench()
    image = np.zeros((4, 4, 3), np.uint8)
    image[0] = (242, 13, 191)  # the livery's magenta
    image[1] = (204, 26, 26)  # the base world's red car
    image[2] = (153, 102, 178)  # a purple shirt
    image[3] = (60, 5, 50)  # magenta in deep shadow: too dark to count
    hits = bench.livery_pixels(image)
    assert hits[0].all() and not hits[1:].any()


def test_bench_runs_end_to_end_on_micro_and_resumes(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    world = render_world(tmp_path / "world", scenes=2, seconds=4.0)
    cache = tmp_path / "cache"
    assert main(train_args("autoencoder", world, tmp_path / "ae", cache, 2)) == 0
    assert main(train_args("image", world, tmp_path / "img", cache, 2, f"model.vae={tmp_path / 'ae' / 'export'}")) == 0
    assert main(train_args("prediction", world, tmp_path / "tmp", cache, 2,
                           f"model.pretrained={tmp_path / 'img' / 'export'}")) == 0
    bench = _bench()
    work, out = tmp_path / "work", tmp_path / "result.json"
    argv = ["--scale", "micro", "--work", str(work), "--image-export", str(tmp_path / "img" / "export"),
            "--checkpoint", str(tmp_path / "tmp" / "export"), "--scenes", "2", "--seconds", "2", "--ae-frames", "3",
            "--steps", "2", "--gen-seeds", "2", "--gen-seconds", "2", "--sampler-steps", "2", "--out", str(out)]
    assert bench.main(argv) == out
    result = json.loads(out.read_text())
    ae = result["autoencoder_check"]
    assert ae["subject_pixels"] > 0 and ae["signature_gt"] > 0.05 and ae["off_subject_gt"] < 0.01
    assert 0.0 <= ae["signature_ae"] <= 1.0 and 0.0 <= ae["off_subject_ae"] <= 1.0
    assert ae["reconstructs_livery"] == (ae["signature_ae"] >= 0.5 * ae["signature_gt"])
    assert set(result["figures"]) == {"base", "lora"}
    for figures in result["figures"].values():
        assert len(figures["signature_in_boxes"]["per_seed"]) == 2
        assert all(0.0 <= v <= 1.0 for v in figures["signature_in_boxes"]["per_seed"])
        assert all(math.isfinite(v) and v >= 0 for v in figures["warp_error"]["per_seed"])
    run = json.loads((work / "gen_lora" / "seed_0" / "run.json").read_text())
    assert "lora" in run["exports"] and "lora" not in json.loads((work / "gen_base" / "seed_0" / "run.json")
                                                                  .read_text())["exports"]
    assert result["lora_s_per_step_incl_startup"] > 0
    # A rerun finds every phase done: nothing is trained or generated again, the figures are the same.
    marks = {p: p.stat().st_mtime_ns for p in (work / "lora" / "export" / "drivesim_export.json",
                                               work / "gen_lora" / "seed_1" / "video.mp4", work / "ae_check.json")}
    bench.main(argv)
    assert {p: p.stat().st_mtime_ns for p in marks} == marks
    assert json.loads(out.read_text())["figures"] == result["figures"]
