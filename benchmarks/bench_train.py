"""Training step cost per stage: samples/s and peak RSS for micro and tiny on CPU.

Each configuration runs in its own process (so peak RSS is its own): a small synthetic world is
rendered once, a few-step autoencoder and image export are made as parents, then the stage's module
takes timed optimiser steps (forward, backward, AdamW) on real batches, from cached latents or from
frames (encoded by the frozen autoencoder each step), with and without gradient checkpointing.

    python benchmarks/bench_train.py                  # micro + tiny, 1 and 2 threads
    python benchmarks/bench_train.py --models tiny --threads 1 --steps 5
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def peak_rss_mb() -> float:
    """This process's resident high-water mark (VmHWM). Not ru_maxrss: Linux carries that across
    exec from the forking parent, so a child would report its parent's peak."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024
    return float("nan")
STAGES = ("autoencoder", "image", "temporal", "interpolation")


def _args(stage: str, model: str, world: Path, base: Path, steps: int, *extra: str) -> list[str]:
    return [f"stage={stage}", f"model={model}", "data=synthetic", f"data.root={world}", f"out={base / model / stage}",
            f"trainer.max_steps={steps}", f"cache_dir={base / 'cache'}", "data.num_workers=0", *extra]


def prepare(base: Path, model: str) -> Path:
    """A world and parent exports (2 steps each): the benchmark times steps, not quality."""
    from drivesim.cli import main

    world = base / "world"
    if not world.exists():
        main(["synth", f"out={world}", "scenes=2", "seconds=8", "seed=5", "camera.width=256", "camera.height=128"])
    ae, img = base / model / "autoencoder" / "export", base / model / "image" / "export"
    if not ae.exists():
        assert main(["train", *_args("autoencoder", model, world, base, 2, "trainer.threads=1")]) == 0
    if not img.exists():
        assert main(["train", *_args("image", model, world, base, 2, f"model.vae={ae}", "trainer.threads=1")]) == 0
    return world


def one(stage: str, model: str, base: Path, threads: int, steps: int, cached: bool, checkpointing: bool,
        bf16: bool = False) -> dict:
    import torch

    from drivesim.config import compose_command
    from drivesim.training.build import build_module, build_train_data
    from drivesim.training.data import collate_positioned
    from drivesim.training.resolve import resolve

    torch.set_num_threads(threads)
    world = base / "world"
    extra = [f"trainer.gradient_checkpointing={str(checkpointing).lower()}", f"stage.cache_latents={str(cached).lower()}"]
    if stage != "autoencoder":
        extra.append(f"model.vae={base / model / 'autoencoder' / 'export'}")
    if stage in ("temporal", "interpolation"):
        extra.append(f"model.pretrained={base / model / 'image' / 'export'}")
    if stage == "interpolation":
        extra.append("data.fps=12")
    cfg = compose_command("train", _args(stage, model, world, base, steps, *extra))
    resolved = resolve(cfg)
    data = build_train_data(resolved, base / "scratch")
    module = build_module(resolved, data)
    optimizer = torch.optim.AdamW(module.trainable(), lr=1e-4)
    batch_size = int(resolved.cfg.data.batch_size)
    n = len(data.train_set)  # type: ignore[arg-type]
    times = []
    for step in range(steps + 1):
        items = [(step * batch_size + j, data.train_set[(step * batch_size + j) % n]) for j in range(batch_size)]
        start = time.perf_counter()
        batch = collate_positioned(items)
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = module.losses(batch, module.generators(batch))["loss"]
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    step_s = sorted(times[1:])[len(times[1:]) // 2]  # median, the first (warm-up) step left out
    frames = batch_size * int(resolved.cfg.data.frames)
    return {"stage": stage, "model": model, "threads": threads, "cached_latents": cached,
            "gradient_checkpointing": checkpointing, "precision": "bf16-mixed" if bf16 else "32-true", "batch": batch_size, "frames_per_sample": int(resolved.cfg.data.frames),
            "step_s": round(step_s, 4), "samples_per_s": round(batch_size / step_s, 3),
            "frames_per_s": round(frames / step_s, 2),
            "peak_rss_mb": round(peak_rss_mb(), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="micro,tiny")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--one", nargs=7, metavar=("STAGE", "MODEL", "BASE", "THREADS", "CACHED", "CKPT", "BF16"))
    args = parser.parse_args()
    if args.one:
        stage, model, base, threads, cached, ckpt, bf16 = args.one
        print(json.dumps(one(stage, model, Path(base), int(threads), args.steps, cached == "1", ckpt == "1",
                             bf16 == "1")))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        for model in args.models.split(","):
            prepare(base, model)
            for stage in STAGES:
                variants = [(t, True, False, False) for t in map(int, args.threads.split(","))]
                variants += [(1, False, False, False), (1, True, True, False), (1, True, False, True)]
                for threads, cached, ckpt, bf16 in variants:
                    if stage == "autoencoder" and not cached:
                        continue  # the autoencoder always reads frames
                    out = subprocess.run([sys.executable, __file__, "--steps", str(args.steps), "--one", stage, model,
                                          str(base), str(threads), str(int(cached)), str(int(ckpt)), str(int(bf16))],
                                         capture_output=True, text=True, check=True)
                    row = json.loads(out.stdout.strip().splitlines()[-1])
                    rows.append(row)
                    print(f"{model:6s} {stage:13s} threads={threads} cached={int(cached)} ckpt={int(ckpt)} "
                          f"bf16={int(bf16)}: "
                          f"{row['step_s']:.3f} s/step, {row['samples_per_s']:.2f} samples/s, "
                          f"{row['frames_per_s']:.1f} frames/s, peak RSS {row['peak_rss_mb']:.0f} MB")
    RESULTS.mkdir(exist_ok=True)
    record = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "rows": rows,
              "note": "CPU; median of timed steps after one warm-up step; autoencoder rows are on frames"}
    (RESULTS / "bench_train_cpu.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
