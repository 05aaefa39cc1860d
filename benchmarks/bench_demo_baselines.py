"""The demo clip's reference points: copy-last-frame and the rendered scene itself, scored like `drivesim demo`.

`python benchmarks/bench_demo_baselines.py --demo outputs/demo` reads a finished demo folder (its run.json,
conditions.jsonl and rendered scene under synth/), writes two generate-format folders beside it under
`--work` (the last context frame frozen for the whole clip; the rendered frames themselves) and scores each
with the demo's own metric groups, so the demo's metrics.json can be read against the floor and a trivial
baseline on the very same clip. Prints and saves `benchmarks/results/demo_baselines.json`.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path

from drivesim.atomic import atomic_write_text
from drivesim.demo.outputs import generated_frames, rendered_frames
from drivesim.demo.scores import measure
from drivesim.metrics.protocol import load_protocol
from drivesim.pipelines.writers import Mp4Writer

log = logging.getLogger(__name__)
GROUPS = ["fid_synth", "fvd_synth", "layout", "temporal", "action"]


def baseline_folder(demo: Path, work: Path, kind: str) -> Path:
    run = json.loads((demo / "run.json").read_text())
    record = run["demo"]
    fps, count = float(run["fps"]), int(run["frames"])
    key_fps = float(record["key_fps"])
    start = 1.0 / key_fps + 1.0 / fps  # demo.run.CascadePlan.start_time with two context keys
    height, width = next(generated_frames(demo / "video.mp4")).shape[:2]  # the cascade's frame size
    out = work / kind
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for name in ("conditions.jsonl", "run.json"):
        shutil.copy(demo / name, out / name)
    scene, synth = str(record["scene"]), demo / "synth"
    if kind == "copy_last_frame":  # the last given key frame, frozen
        last = next(rendered_frames(synth, scene, 1.0 / key_fps, fps, 1, (height, width)))
        frames = (last for _ in range(count))
    else:
        frames = rendered_frames(synth, scene, start, fps, count, (height, width))
    with Mp4Writer(out / "video.mp4", fps) as writer:
        for frame in frames:
            writer.write(frame)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, default=Path("outputs/demo"))
    parser.add_argument("--work", type=Path, default=Path("outputs/demo_baselines"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/demo_baselines.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    data = {"name": "synthetic", "root": str(args.demo / "synth"), "version": "v1.0-synth"}
    fps = float(json.loads((args.demo / "run.json").read_text())["fps"])
    result = {"demo": str(args.demo), "demo_metrics": {k: v["value"] for k, v in
                                                       json.loads((args.demo / "metrics.json").read_text())["metrics"].items()}}
    for kind in ("copy_last_frame", "rendered"):
        report = measure(baseline_folder(args.demo, args.work, kind), load_protocol("synth-bench-v1"), fps, GROUPS, data=data)
        result[kind] = {k: v["value"] for k, v in report["metrics"].items()}
        log.info("%s: %s", kind, json.dumps(result[kind]))
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
