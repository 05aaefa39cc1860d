"""benchmarks/bench_lora_livery.py: its colour measures on hand-made images, and end to end on micro exports
(every phase runs, a rerun resumes, a changed setting redoes the phases it touches and no others)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import torch
from train_fixtures import REPO, render_world, train_args

from drivesim.cli import main
from drivesim.synth.livery import LIVERIES, PRIMARY_MIN_SATURATION


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


def test_livery_pixels_count_exactly_the_magenta_ones() -> None:
    bench = _bench()
    rng = np.random.default_rng(0)
    image = np.full((30, 40, 3), 128, np.uint8)  # grey road
    image[:, :10] = (40, 120, 40)  # green verge
    primary = np.round(np.array(LIVERIES["magenta_checker"].primary) * 255).astype(np.uint8)
    picks = rng.choice(30 * 40, size=137, replace=False)
    image.reshape(-1, 3)[picks] = primary
    # just below / at the saturation threshold (the one constant the benchmark and the tests share)
    s = PRIMARY_MIN_SATURATION
    image[0, 0] = (250, round(250 * (1 - (s - 2) / 255)), 250)  # hue 300, saturation s - 2: not counted
    image[0, 1] = (250, round(250 * (1 - (s + 2) / 255)), 250)  # saturation s + 2: counted
    assert not bench.livery_pixels(image[:1, :1]).any() and bench.livery_pixels(image[:1, 1:2]).all()
    expected = np.zeros(30 * 40, bool)
    expected[picks] = True
    expected = expected.reshape(30, 40)
    expected[0, 0], expected[0, 1] = False, True
    assert (bench.livery_pixels(image) == expected).all()


def test_box_signature_on_a_frame_with_a_known_magenta_box() -> None:
    bench = _bench()
    frame = np.full((40, 80, 3), 100, np.uint8)
    frame[10:20, 20:40] = (242, 13, 191)  # 200 magenta pixels, inside the box (rows 10-29, cols 20-39)
    frame[35:38, 60:70] = (242, 13, 191)  # 30 outside it
    frame[25:30, 20:40] = (204, 26, 26)  # red, inside: not the livery
    rows = [{"boxes": [{"xyxy": [0.25, 0.25, 0.5, 0.75]}]}]
    got = bench.box_signature(frame[None], rows)
    assert got["signature_in_boxes"] == 200 / 400
    assert got["signature_outside"] == 30 / (40 * 80 - 400)
    empty = bench.box_signature(frame[None], [{"boxes": []}])
    assert empty["signature_in_boxes"] == 0 and empty["signature_outside"] == 230 / (40 * 80)


def _mtimes(paths: list[Path]) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in paths}


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
    assert set(result["figures"]) == {"base", "lora"}
    for figures in result["figures"].values():
        assert len(figures["signature_in_boxes"]["per_seed"]) == 2
        assert all(math.isfinite(v) and v >= 0 for v in figures["warp_error"]["per_seed"])
    run = json.loads((work / "gen_lora" / "seed_0" / "run.json").read_text())
    assert "lora" in run["exports"] and "lora" not in json.loads((work / "gen_base" / "seed_0" / "run.json")
                                                                  .read_text())["exports"]
    timing = result["lora_timing"]
    assert timing["steps"] == timing["steps_timed"] == 2 and timing["resumed_from_step"] == 0
    assert result["lora_s_per_step_incl_startup"] == timing["wall_time_s"] / 2 > 0
    for phase in ("subject", "ae", "lora", "gen_base", "gen_lora"):
        assert json.loads((work / "stamps" / f"{phase}.json").read_text())["complete"] is True
    # An identical rerun finds every phase done: nothing is rendered, trained or generated again.
    lora_marker, base_video = work / "lora" / "export" / "drivesim_export.json", work / "gen_base" / "seed_1" / "video.mp4"
    every = [work / "subject" / "synth" / "manifest.json", work / "ae_check.json", lora_marker,
             work / "gen_lora" / "seed_1" / "video.mp4", base_video]
    marks = _mtimes(every)
    bench.main(argv)
    assert _mtimes(every) == marks
    assert json.loads(out.read_text())["figures"] == result["figures"]
    # A generated folder without run.json is not done: that phase runs again (and only it).
    (work / "gen_lora" / "seed_0" / "run.json").unlink()
    bench.main(argv)
    assert (work / "gen_lora" / "seed_0" / "run.json").is_file()
    assert _mtimes(every[:3] + [base_video]) == {p: marks[p] for p in every[:3] + [base_video]}
    # Other --steps: the LoRA is trained again and its videos made again; subject, AE check and base stay.
    steps = argv.index("--steps") + 1
    bench.main(argv[:steps] + ["3"] + argv[steps + 1:])
    result3 = json.loads(out.read_text())
    assert result3["lora_steps"] == 3 and result3["lora_timing"]["steps"] == 3
    assert json.loads((work / "lora" / "export" / "summary.json").read_text())["steps"] == 3
    assert lora_marker.stat().st_mtime_ns != marks[lora_marker]
    assert (work / "gen_lora" / "seed_1" / "video.mp4").stat().st_mtime_ns != marks[every[3]]
    kept = [every[0], every[1], base_video]
    assert _mtimes(kept) == {p: marks[p] for p in kept}
    assert json.loads((work / "stamps" / "lora.json").read_text())["settings"]["steps"] == 3
    # Training killed after its last checkpoint, before the export: the rerun resumes it, and times only
    # the steps that rerun trained (none here: it re-exports), not the whole run over the rerun's time.
    stamp = work / "stamps" / "lora.json"
    stamp.write_text(json.dumps({**json.loads(stamp.read_text()), "complete": False}))
    (work / "lora" / "export" / "drivesim_export.json").unlink()
    bench.main(argv[:steps] + ["3"] + argv[steps + 1:])
    timing = json.loads(out.read_text())["lora_timing"]
    assert (timing["resumed_from_step"], timing["steps_timed"], timing["s_per_step"]) == (3, 0, None)
    assert (work / "lora" / "export" / "drivesim_export.json").is_file()
