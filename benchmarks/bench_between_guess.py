"""The interpolation stage's in-between guess (`interpolation_sampler.init_guess=ego_warp`): how good, how fast.

On a replayed synthetic scene (a `synth` world folder, e.g. the demo's `out/synth`), the rendered frames at
the output rate are cut into key intervals of 4 frames; each in-between frame is guessed from its two
rendered keys warped by the timeline's ego motion (and the agents' boxes) to its time, blended

- `plain`: by distance in time everywhere (until session 22),
- `seen`: the same where both warps saw the point, from the one that did elsewhere (`blend_warps`, session 23),
- `earlier` / `later`: one key's warp alone, and `copy`: the earlier key unwarped,

against the rendered in-between frame: pixel MSE by position in the interval, and OpenCV DIS road flow
(bottom half) per frame from the key through the guesses to the next key, beside the rendered frames' own.
No model runs: this isolates the guess. Then its cost: `warped_between` over the same frames, and the same
split over `--workers` threads (tried in session 23 against the warps' cost: the results are equal, the time
is not shorter - their numpy operations are too small to run outside the GIL).

    python benchmarks/bench_between_guess.py --synth outputs/demo/synth --seconds 20
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_ego_warp import replayed_scene  # noqa: E402

RESULTS = HERE / "results"
FACTOR = 4  # output frames per key interval (x4 interpolation)
GUESSES = ("plain", "seen", "earlier", "later", "copy")
log = logging.getLogger("bench_between_guess")


def _grey(frame: Tensor) -> np.ndarray:
    return ((frame.clamp(-1, 1) + 1) * 127.5).mean(0).round().to(torch.uint8).numpy()


def _road_flow(frames: list[Tensor], dis: Any) -> list[float]:
    """Mean DIS flow magnitude over the bottom half, frame to frame."""
    grey = [_grey(f) for f in frames]
    return [float(np.linalg.norm(dis.calc(a, b, None), axis=-1)[a.shape[0] // 2:].mean())
            for a, b in zip(grey[:-1], grey[1:])]


@torch.no_grad()
def measure(cascade: Path, synth: Path, scene: str, seconds: float, workers: int) -> dict[str, Any]:
    from drivesim.pipelines.ego_warp import BetweenFrame, blend_warps, ego_warps, warped_between

    replay = replayed_scene(cascade, synth, scene, seconds, per_key=FACTOR)
    out_fps = replay.engine.fps * FACTOR
    timeline, frames, times = replay.timeline, replay.frames, replay.times  # rendered frames at the output rate
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)  # type: ignore[attr-defined]
    mse: dict[str, list[list[float]]] = {g: [[] for _ in range(FACTOR - 1)] for g in GUESSES}
    flow: dict[str, list[list[float]]] = {g: [[] for _ in range(FACTOR)] for g in (*GUESSES, "rendered")}
    wanted: list[Any] = []
    keys: list[Tensor] = []
    for a in range(0, len(times) - FACTOR, FACTOR):
        b = a + FACTOR
        k = len(keys) // 2
        keys += [frames[a], frames[b]]
        made: dict[str, list[Tensor]] = {g: [] for g in GUESSES}
        for r in range(1, FACTOR):
            w = r / FACTOR
            early = ego_warps(frames[a][None], timeline, times[a], [times[a + r]], boxes=True)[0]
            late = ego_warps(frames[b][None], timeline, times[b], [times[a + r]], boxes=True)[0]
            if early is None or late is None:
                break
            wanted.append(BetweenFrame(2 * k, 2 * k + 1, times[a], times[b], times[a + r], w))
            made["plain"].append(((1.0 - w) * early.frame + w * late.frame)[0])
            made["seen"].append(blend_warps(early, late, w)[0])
            made["earlier"].append(early.frame[0])
            made["later"].append(late.frame[0])
            made["copy"].append(frames[a])
        else:
            for g, guesses in made.items():
                for r, guess in enumerate(guesses):
                    mse[g][r].append(float((guess - frames[a + r + 1]).pow(2).mean()))
                for r, v in enumerate(_road_flow([frames[a], *guesses, frames[b]], dis)):
                    flow[g][r].append(v)
            for r, v in enumerate(_road_flow([frames[a + r] for r in range(FACTOR + 1)], dis)):
                flow["rendered"][r].append(v)
    stack = torch.stack(keys)
    start = time.perf_counter()
    one = warped_between(stack, timeline, wanted, boxes=True)
    one_s = time.perf_counter() - start
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        parts = list(pool.map(lambda part: warped_between(stack, timeline, part, boxes=True),
                              [wanted[i::workers] for i in range(workers)]))
    many_s = time.perf_counter() - start
    many: list[Tensor | None] = [None] * len(wanted)
    for i, part in enumerate(parts):
        many[i::workers] = part
    equal = all(x is not None and y is not None and torch.equal(x, y) for x, y in zip(one, many))
    mean = {name: {g: [float(np.mean(v)) if v else None for v in per] for g, per in table.items()}
            for name, table in (("mse_by_position", mse), ("road_flow_px_by_step", flow))}
    return {"scene": scene, "frames": len(times), "out_fps": out_fps, "intervals": len(mse["plain"][0]), **mean,
            "cost": {"guesses": len(wanted), "one_thread_s": one_s, "s_per_guess": one_s / max(1, len(wanted)),
                     "workers": workers, "workers_s": many_s,
                     "speed_up": one_s / many_s, "equal_results": equal}}


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cascade", type=Path, default=Path("drivesim/assets/demo_cascade"))
    parser.add_argument("--synth", type=Path, required=True, help="a synthetic world folder (the demo's out/synth)")
    parser.add_argument("--scene", default="synth-0000")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=2, help="threads for the timed multi-threaded run")
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_between_guess.json")
    args = parser.parse_args()
    result = measure(args.cascade, args.synth, args.scene, args.seconds, args.workers)
    result["date"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    result["torch_threads"] = torch.get_num_threads()
    for name in ("mse_by_position", "road_flow_px_by_step"):
        log.info("%s", name)
        for g, values in result[name].items():
            log.info("  %-9s %s", g, " ".join("-" if v is None else f"{v:.4f}" for v in values))
    c = result["cost"]
    log.info("%d guesses: one thread %.2f s, %d threads %.2f s (x%.2f), equal results: %s", c["guesses"],
             c["one_thread_s"], c["workers"], c["workers_s"], c["speed_up"], c["equal_results"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
