"""Closed-loop simulator speed: steps per second and real-time factor; predict throughput on 1 and 2 processes.

1. `Simulator.step` in a closed loop (a constant-speed policy reading nothing; the policy's cost is
   nil) on random-weight `micro` and `tiny` engines (speed does not depend on the weights; built as
   benchmarks/bench_generate.py builds them: DDIM, box guidance 2 so CFG doubles the batch), and on a
   trained export when `--export` names one: steps per second, seconds per step, output frames per
   step and the real-time factor (seconds of video per second of compute; > 1 is faster than real time).
2. `drivesim generate scenarios=DIR trainer=predict_cpu | predict_ddp_cpu` on random-weight micro
   exports: wall seconds and rollouts per minute for 1 and 2 CPU processes (start-up included).
   On 2 cores expect no gain: one process already uses both cores.

    python benchmarks/bench_simulator.py                       # about 2 minutes on 2 CPU cores
    python benchmarks/bench_simulator.py --export outputs/recipe/temporal/export --skip-predict
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))  # generate_fixtures.write_micro_exports: random-weight exports on disk

from bench_generate import SCENARIO, build, rollout  # noqa: E402

from drivesim.simulator import Simulator  # noqa: E402

RESULTS = HERE / "results"


def closed_loop(sim: Simulator, seconds: float, speed: float = 10.0) -> dict[str, Any]:
    sim.reset(SCENARIO, seed=0)
    n = sim.action_frames
    sim.step(np.full(n, speed), np.zeros(n))  # warm-up (and the first, longer chunk)
    steps, frames, per_step = 0, 0, []
    start = time.perf_counter()
    while frames < seconds * sim.fps:
        n = sim.action_frames
        t0 = time.perf_counter()
        obs = sim.step(np.full(n, speed), np.zeros(n))
        per_step.append(time.perf_counter() - t0)
        steps, frames = steps + 1, frames + len(obs)
    wall = time.perf_counter() - start
    return {"fps": sim.fps, "steps": steps, "frames": frames, "frames_per_step": frames / steps,
            "steps_per_second": steps / wall, "seconds_per_step_median": float(np.median(per_step)),
            "realtime_factor": frames / sim.fps / wall}


def predict_throughput(processes: int, items: int, seconds: float, steps: int, work: Path) -> dict[str, Any]:
    from generate_fixtures import write_micro_exports

    exports = work / "exports"
    if not exports.exists():
        write_micro_exports(exports)
    scenarios = work / "scenarios"
    scenarios.mkdir(exist_ok=True)
    for i in range(items):
        (scenarios / f"s{i}.yaml").write_text(yaml.safe_dump({**SCENARIO, "name": f"s{i}"}))
    out = work / f"out_{processes}"
    preset = "predict_cpu" if processes == 1 else "predict_ddp_cpu"
    args = [str(Path(sys.executable).parent / "drivesim"), "generate", f"checkpoint={exports / 'temporal'}",
            f"out={out}", f"scenarios={scenarios}", f"seconds={seconds}", f"sampler.steps={steps}",
            f"trainer={preset}", "format=nuscenes"]
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, 2 // processes))}
    start = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    return {"processes": processes, "items": items, "video_seconds_each": seconds, "wall_seconds": wall,
            "rollouts_per_minute": 60 * items / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of video per closed-loop run")
    parser.add_argument("--steps", type=int, default=10, help="sampler steps")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", nargs="*", default=["micro", "tiny"])
    parser.add_argument("--export", default=None, help="a trained temporal export or cascade folder")
    parser.add_argument("--skip-predict", action="store_true")
    parser.add_argument("--predict-items", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    record: dict[str, Any] = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                              "machine": platform.machine(), "device": args.device, "threads": args.threads,
                              "torch": torch.__version__, "sampler": f"ddim:{args.steps}", "seconds": args.seconds,
                              # Other jobs on the machine slow everything: read the ratios, not the absolutes.
                              "load_average_at_start": os.getloadavg()[0], "closed_loop": {}}
    for name in args.models:
        engine, _ = build(name, args.device, args.steps)
        closed = closed_loop(Simulator(engine), args.seconds)
        with tempfile.TemporaryDirectory() as tmp:  # the same engine open loop, in the same conditions
            closed["open_loop_realtime_factor"] = rollout(engine, args.seconds, Path(tmp))["realtime_factor"]
        closed["closed_over_open_loop_speed"] = closed["realtime_factor"] / closed["open_loop_realtime_factor"]
        record["closed_loop"][f"{name} (random weights)"] = closed
        print(name, json.dumps(closed), flush=True)
    if args.export:
        sim = Simulator.from_pretrained(args.export, sampler={"steps": args.steps}, device=args.device)
        record["closed_loop"][f"export {args.export}"] = closed_loop(sim, args.seconds)
    if not args.skip_predict:
        with tempfile.TemporaryDirectory() as tmp:
            record["predict"] = [predict_throughput(p, args.predict_items, 2.0, 2, Path(tmp)) for p in (1, 2)]
        print(json.dumps(record["predict"]), flush=True)
    RESULTS.mkdir(exist_ok=True)
    record["load_average_at_end"] = os.getloadavg()[0]
    path = RESULTS / f"bench_simulator_{args.device}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(path)


if __name__ == "__main__":
    main()
