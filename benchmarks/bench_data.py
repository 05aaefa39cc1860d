"""Data-loading throughput: clips/s for nuScenes-format data (the synthetic world rendered at the
nuScenes camera size, 1600x900 JPEG) and a dash-cam video folder (the same frames as 12 fps H.264),
at 128x256 and 512x1024, through the DataLoader with 2 workers.

    python benchmarks/bench_data.py [--clips 40] [--frames 8] [--fps 3] [--work DIR]

Prints the figures and saves benchmarks/results/bench_data.json. The comparison figure is the
training step measured in DESIGN.md section 6 (13M-parameter UNet, 8 frames of 32x64 latents, 4.8 s).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import av
import cv2
import torch
from torch.utils.data import DataLoader

from drivesim.config.synth import CameraConfig, SynthConfig
from drivesim.data import NuScenesClips, VideoFolderClips, collate_clips
from drivesim.data.datamodule import worker_init
from drivesim.synth import render_dataset

TRAIN_STEP_S = 4.8  # DESIGN.md section 6


def make_data(work: Path, seconds: float) -> tuple[Path, Path]:
    synth = work / "synth"
    if not (synth / "v1.0-synth").is_dir():
        cfg = SynthConfig(out=str(synth), scenes=2, seconds=seconds, seed=0,
                          camera=CameraConfig(width=1600, height=900))
        render_dataset(cfg)
    videos = work / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    for scene in (0, 1):
        path = videos / f"scene{scene}.mp4"
        if path.is_file():
            continue
        frames = sorted((synth / "samples" / "CAM_FRONT").glob("*")) + sorted((synth / "sweeps" / "CAM_FRONT").glob("*"))
        names = sorted((p for p in frames if f"synth-{scene:04d}" in p.name or f"scene{scene}" in p.name), key=lambda p: p.name)
        if not names:  # file naming unknown: split the frames in two halves
            frames.sort(key=lambda p: p.name)
            names = frames[scene * len(frames) // 2 : (scene + 1) * len(frames) // 2]
        tmp = path.with_suffix(".tmp.mp4")
        with av.open(str(tmp), "w") as out:
            stream = out.add_stream("libx264", rate=12)
            stream.width, stream.height, stream.pix_fmt = 1600, 900, "yuv420p"
            stream.codec_context.gop_size = 12
            for name in names:
                rgb = cv2.cvtColor(cv2.imread(str(name)), cv2.COLOR_BGR2RGB)
                for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
        os.replace(tmp, path)
    return synth, videos


def throughput(dataset, clips: int, workers: int) -> dict[str, float]:
    loader = DataLoader(dataset, batch_size=1, shuffle=True, num_workers=workers, collate_fn=collate_clips,
                        generator=torch.Generator().manual_seed(0), worker_init_fn=worker_init)
    n, first, start = 0, None, time.perf_counter()
    while n < clips:
        for batch in loader:
            if first is None:
                first = time.perf_counter()  # after worker start-up and the first clip
            n += len(batch)
            if n >= clips:
                break
    end = time.perf_counter()
    steady = (n - 1) / (end - first) if first and n > 1 else float("nan")
    return {"clips": n, "seconds": end - start, "clips_per_s": steady, "clips_per_s_incl_startup": n / (end - start)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--fps", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each synthetic scene")
    parser.add_argument("--work", type=Path, default=Path("outputs/bench_data"))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--sizes", default="128x256,512x1024", help="comma-separated HxW output sizes")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bench_data.json")
    args = parser.parse_args()
    synth, videos = make_data(args.work, args.seconds)
    load_start = os.getloadavg()
    results = []
    sizes = [tuple(int(v) for v in item.split("x")) for item in args.sizes.split(",")]
    for size in sizes:
        sources = {
            "nuscenes-format (synthetic, 1600x900 JPEG)": NuScenesClips(
                synth, "v1.0-synth", frames=args.frames, fps=args.fps, size=size, stride=0.25),
            "video folder (1600x900 H.264, 12 fps)": VideoFolderClips(
                videos, frames=args.frames, fps=args.fps, size=size, stride=0.25),
        }
        for name, ds in sources.items():
            runs = [throughput(ds, args.clips, args.workers) for _ in range(args.repeats)]
            figures = max(runs, key=lambda r: r["clips_per_s"])  # best of the repeats: others share the cores
            figures["all_clips_per_s"] = [r["clips_per_s"] for r in runs]
            ratio = figures["clips_per_s"] * TRAIN_STEP_S
            row = {"source": name, "size": list(size), "frames": args.frames, "fps": args.fps,
                   "workers": args.workers, "dataset_clips": len(ds), **figures,
                   "clips_loaded_per_4.8s_train_step": ratio}
            results.append(row)
            print(f"{name:45s} {size[0]}x{size[1]:<5d} {figures['clips_per_s']:6.2f} clips/s "
                  f"({ratio:5.1f} clips per {TRAIN_STEP_S} s training step)")
    record = {"benchmark": "data loading", "machine": platform.platform(), "cpus": os.cpu_count(),
              "loadavg_at_start": load_start, "loadavg_at_end": os.getloadavg(), "train_step_s_reference": TRAIN_STEP_S, "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, args.out)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
