"""Synthetic-world rendering speed on one CPU core: frames/s at 256x512 (target >= 60).

Measures (1) rasterising alone and (2) the whole writer (render + JPEG + mask PNG + tables + truth
sidecar), best of several repeats, as wall-clock frames/s and as frames per CPU-second of this
single-threaded process (the figure that does not depend on other people's load on a shared machine);
prints the figures and saves benchmarks/results/bench_synth.json.

    python benchmarks/bench_synth.py [--scenes 2] [--seconds 10] [--repeats 3]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402

from drivesim.config.synth import CameraConfig, SynthConfig  # noqa: E402
from drivesim.synth.camera import Camera  # noqa: E402
from drivesim.synth.raster import Rasteriser  # noqa: E402
from drivesim.synth.render import render_dataset  # noqa: E402
from drivesim.synth.scene import build_scene, frame_count  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "bench_synth.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenes", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--height", type=int, default=256)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    camera_cfg = CameraConfig(width=args.width, height=args.height)
    n_frames, _ = frame_count(args.seconds, 12.0, 2.0)
    total = n_frames * args.scenes
    raster_fps, write_fps, raster_cpu, write_cpu = [], [], [], []
    for seed in range(args.repeats):
        cfg = SynthConfig(scenes=args.scenes, seconds=args.seconds, seed=seed, camera=camera_cfg)
        scenes = [build_scene(cfg, i) for i in range(args.scenes)]
        start, cpu = time.perf_counter(), time.process_time()
        for scene in scenes:
            rast = Rasteriser(scene, Camera.from_config(camera_cfg))
            for k in range(scene.n_frames):
                rast.render(k)
        raster_fps.append(total / (time.perf_counter() - start))
        raster_cpu.append(total / (time.process_time() - cpu))
        with tempfile.TemporaryDirectory() as tmp:
            cfg.out = str(Path(tmp) / "synth")
            start, cpu = time.perf_counter(), time.process_time()
            render_dataset(cfg)
            write_fps.append(total / (time.perf_counter() - start))
            write_cpu.append(total / (time.process_time() - cpu))
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    result = {
        "resolution": f"{args.height}x{args.width}", "frames_per_repeat": total, "repeats": args.repeats,
        "threads": 1, "raster_fps_best": round(max(raster_fps), 1), "raster_fps_all": [round(f, 1) for f in raster_fps],
        "dataset_fps_best": round(max(write_fps), 1), "dataset_fps_all": [round(f, 1) for f in write_fps],
        "raster_fps_per_cpu_second_best": round(max(raster_cpu), 1),
        "dataset_fps_per_cpu_second_best": round(max(write_cpu), 1),
        "load_average_1m": round(load[0], 2), "cpu": platform.processor() or platform.machine(),
        "target_fps": 60.0,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(f"synthetic world at {result['resolution']}, one core, {total} frames x {args.repeats} repeats")
    print(f"  rasterise only        : {result['raster_fps_best']:.1f} frames/s (best; all {result['raster_fps_all']})")
    print(f"  whole dataset writer  : {result['dataset_fps_best']:.1f} frames/s (best; all {result['dataset_fps_all']})")
    print(f"  per CPU-second (load-independent): rasterise {result['raster_fps_per_cpu_second_best']:.1f}, "
          f"writer {result['dataset_fps_per_cpu_second_best']:.1f} frames/s")
    print(f"  load average (1 min)  : {result['load_average_1m']}  -> {RESULTS}")


if __name__ == "__main__":
    main()
