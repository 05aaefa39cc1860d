"""FID cost and floor on CPU: seconds per 1000 frames of FID Inception features (batch size, threads,
bf16), and the FID of real-vs-real splits of the synthetic world at 500, 1000 and 2000 frames.

    python benchmarks/bench_metrics.py                          # speed (about 2 min) and floors
    python benchmarks/bench_metrics.py --skip-floors --frames 16
    python benchmarks/bench_metrics.py --skip-speed --floors 500,1000,2000 --repeats 3

Floors: the frames of `--scenes` synthetic scenes (default 32 x 10.5 s: 2,032 frames per half; seeds
from 95001, disjoint from every protocol's held-out and the metric networks' training seeds) split by
scene into halves A and B; for each N, `--repeats`
random N-frame subsets of A against N of B give the mean and spread (the sampling noise). Per-frame
features are cached per dataset and extractor hash, so the expensive part is paid once. Results print
and go to benchmarks/results/bench_metrics.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from drivesim.atomic import atomic_write_text
from drivesim.metrics.extractors import cache_dir
from drivesim.metrics.fid import FID
from drivesim.metrics.frechet import GaussianStats

RESULTS = Path(__file__).resolve().parent / "results" / "bench_metrics.json"
FLOOR_SEEDS_START = 95001


def speed(frames: int, batches: list[int], threads: list[int], dtypes: list[str]) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (frames, 3, 128, 256), dtype=torch.uint8, generator=g)
    rows = []
    for dtype_name in dtypes:
        dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype_name]
        for n_threads in threads:
            torch.set_num_threads(n_threads)
            for batch in batches:
                metric = FID(batch_size=batch, dtype=dtype)
                metric.features(x[:batch])  # warm-up (TorchScript profiling runs)
                start = time.perf_counter()
                metric.features(x)
                seconds = time.perf_counter() - start
                rows.append({"dtype": dtype_name, "threads": n_threads, "batch": batch, "frames": frames,
                             "seconds_per_1000_frames": round(1000 * seconds / frames, 1)})
                print(rows[-1], flush=True)
    return rows


def floor_frames(scenes: int, seconds: float) -> tuple[list[Path], list[Path], str]:
    from drivesim.config.synth import CameraConfig, SynthConfig
    from drivesim.synth.render import render_dataset
    from drivesim.synth.truth import load_scene_truth

    root = cache_dir() / "benchmarks" / "fid-floor" / f"{scenes}x{seconds:g}s"
    if not (root / "synth" / "manifest.json").is_file():
        render_dataset(SynthConfig(out=str(root), scenes=scenes, seconds=seconds, seed=FLOOR_SEEDS_START,
                                   camera=CameraConfig(width=256, height=128)))
    names = sorted(p.stem for p in (root / "synth" / "truth").glob("*.json"))
    halves: list[list[Path]] = [[], []]
    for k, name in enumerate(names):
        halves[k * 2 // len(names)].extend(load_scene_truth(root, name).image_paths)
    manifest = (root / "synth" / "manifest.json").read_bytes()
    return halves[0], halves[1], hashlib.sha256(manifest).hexdigest()[:16]


def features(paths: list[Path], key: str, batch: int) -> np.ndarray:
    import cv2

    path = cache_dir() / "features" / f"bench-floor-{key}.npy"
    if path.is_file():
        return np.load(path)
    metric = FID(batch_size=batch)
    out = []
    for start in range(0, len(paths), 64):
        images = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths[start:start + 64]]
        out.append(metric.features(torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()).numpy())
        print(f"features {min(start + 64, len(paths))}/{len(paths)}", flush=True)
    feats = np.concatenate(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, feats)
    return feats


def floors(sizes: list[int], repeats: int, scenes: int, seconds: float, batch: int) -> list[dict]:
    a_paths, b_paths, ident = floor_frames(scenes, seconds)
    sha = FID().file.sha256[:12]
    a, b = features(a_paths, f"{ident}-A-{sha}", batch), features(b_paths, f"{ident}-B-{sha}", batch)
    rows = []
    for n in sizes:
        if n > min(len(a), len(b)):
            print(f"skip N={n}: only {len(a)} / {len(b)} frames per half (raise --scenes)")
            continue
        values = []
        for r in range(repeats):
            rng = np.random.default_rng(r)
            fa, fb = a[rng.choice(len(a), n, replace=False)], b[rng.choice(len(b), n, replace=False)]
            values.append(GaussianStats.from_features(fa).distance(GaussianStats.from_features(fb)))
        row = {"frames_per_side": n, "repeats": repeats, "fid_mean": float(np.mean(values)),
               "fid_std": float(np.std(values)), "values": values}
        if n > min(len(a), len(b)) // 2:
            row["note"] = (f"each subset is {n / min(len(a), len(b)):.0%} of its half: repeats overlap, so fid_std "
                           "understates the sampling noise (raise --scenes)")
        rows.append(row)
        print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=32, help="frames timed per speed setting")
    p.add_argument("--batches", default="1,8,32")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--floors", default="500,1000,2000")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--scenes", type=int, default=32)
    p.add_argument("--seconds", type=float, default=10.5)
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--skip-floors", action="store_true")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    result: dict = json.loads(args.out.read_text()) if args.out.is_file() else {}
    result["machine"] = {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__}
    if not args.skip_speed:
        result["fid_feature_speed"] = speed(args.frames, [int(v) for v in args.batches.split(",")],
                                            [int(v) for v in args.threads.split(",")], args.dtypes.split(","))
    if not args.skip_floors:
        result["fid_real_vs_real_floor"] = {
            "scenes": args.scenes, "seconds_per_scene": args.seconds, "split": "by scene, first half vs second half",
            "rows": floors([int(v) for v in args.floors.split(",")], args.repeats, args.scenes, args.seconds, 16)}
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
