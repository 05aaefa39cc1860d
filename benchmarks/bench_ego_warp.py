"""How good a guess of the next key frames is the last key warped by the ego motion (`sampler.init_guess=ego_warp`)?

On replayed synthetic scenes (a `synth` world folder, e.g. the demo's `out/synth`), every key frame at the
prediction export's key rate is encoded by the cascade's autoencoder; for each key and each look-ahead of
1..k keys the benchmark compares the true later key's latent with (a) a copy of the key (what the sampler's
"given" guess is for frames after the context) and (b) the key decoded, warped by the timeline's ego motion
over the ground plane (and side walls at each `--walls` distance; "+boxes": the agents' boxes moved by their
tracks too) and encoded again, as generation does it.
Lower latent MSE = a better SDEdit start.

    python benchmarks/bench_ego_warp.py --synth outputs/demo/synth --scene synth-0000 --seconds 20
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

RESULTS = Path(__file__).resolve().parent / "results"
log = logging.getLogger("bench_ego_warp")


@dataclass
class ReplayedScene:
    """A rendered synthetic scene replayed through the cascade's prediction export: its engine, its timeline
    and its rendered frames at a chosen rate with their scenario times (0: the replay's start)."""

    engine: Any
    timeline: Any
    frames: Tensor  # (N, 3, H, W) in [-1, 1]
    times: list[float]


def replayed_scene(cascade: Path, synth: Path, scene: str, seconds: float, per_key: int = 1) -> ReplayedScene:
    """`scene` of the world `synth` from scene time 0 on (one context key there), `per_key` frames per key
    interval of the prediction export (1: the key frames; 4: the output rate of x4 interpolation)."""
    from drivesim.config import compose_command
    from drivesim.pipelines.run import cascade_from_config, prepare
    from drivesim.pipelines.scene_clips import clip_times, data_config, load_scene_clip

    cfg = compose_command("generate", [f"checkpoint={cascade / 'prediction'}", "scenario=replay",
                                       "scenario.replay.data=synthetic", f"scenario.replay.root={synth}",
                                       f"scenario.replay.scene={scene}", "scenario.replay.context_frames=1",
                                       "context_frames=2", f"seconds={seconds!r}"])
    loaded = cascade_from_config(cfg)
    engine = loaded.engine
    replay_time = 1.0 / engine.out_fps  # the one context key at scene time 0
    cfg.scenario.replay.time = replay_time
    timeline = prepare(cfg, loaded).timeline
    rate = engine.fps * per_key
    data = data_config("synthetic", {"root": str(synth)}, "bench")
    # The first target sits one frame of the clip's rate before the replay's start at scene time 0 + 1/key rate.
    targets = clip_times(replay_time, 1, seconds, rate, engine.out_fps if per_key == 1 else rate)
    clip = load_scene_clip(data, scene, targets, rate, loaded.size, 1, "bench", with_boxes=False).clip
    # Scenario time 0 is scene time `replay_time`; the clip starts at scene time targets[0].
    times = [float(t) - float(clip.source.timestamps[0]) + float(targets[0]) - replay_time
             for t in clip.source.timestamps]
    return ReplayedScene(engine, timeline, clip.frames.float().div(127.5).sub(1.0), times)


@torch.no_grad()
def measure(cascade: Path, synth: Path, scene: str, seconds: float, ahead: int, walls: list[float | None]) -> dict[str, Any]:
    from drivesim.pipelines.box_warp import moving_boxes
    from drivesim.pipelines.ego_warp import ego_motion, source_grid, warp

    replay = replayed_scene(cascade, synth, scene, seconds)
    engine, timeline, times = replay.engine, replay.timeline, replay.times
    latents = engine.vae.encode_video(replay.frames[None].to(engine.vae.vae.dtype)).float()[0]  # (K, C, h, w)
    decoded = engine.vae.decode_video(latents[None].to(engine.vae.vae.dtype))[0].float().clamp(-1, 1)
    size = (int(decoded.shape[-2]), int(decoded.shape[-1]))
    rows: dict[str, list[list[float]]] = {"copy": [[] for _ in range(ahead)]}
    for w in walls:
        rows[f"warp_walls_{w}"] = [[] for _ in range(ahead)]
        rows[f"warp_walls_{w}+boxes"] = [[] for _ in range(ahead)]
        rows[f"warp_walls_{w}+boxes-occl"] = [[] for _ in range(ahead)]
    for i in range(len(times) - 1):
        for k in range(1, ahead + 1):
            if i + k >= len(times):
                break
            truth = latents[i + k]
            rows["copy"][k - 1].append(float((latents[i] - truth).pow(2).mean()))
            pose = ego_motion(timeline, times[i], times[i + k])  # scenario times
            if pose is None:
                continue
            boxes = moving_boxes(timeline, times[i], times[i + k])
            for w in walls:  # as generation does it: the key decoded, warped in pixels, encoded
                for name, moving, occl in ((f"warp_walls_{w}", [], True), (f"warp_walls_{w}+boxes", boxes, True),
                                           (f"warp_walls_{w}+boxes-occl", boxes, False)):
                    frame = warp(decoded[i:i + 1], source_grid(timeline.camera, pose, size, w, moving, occl))
                    warped = engine.vae.encode_video(frame[None].to(engine.vae.vae.dtype)).float()[0, 0]
                    rows[name][k - 1].append(float((warped - truth).pow(2).mean()))
    summary = {name: [sum(v) / len(v) if v else None for v in per] for name, per in rows.items()}
    return {"scene": scene, "keys": len(times), "key_fps": engine.fps, "latent_mse_by_keys_ahead": summary}


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cascade", type=Path, default=Path("drivesim/assets/demo_cascade"))
    parser.add_argument("--synth", type=Path, required=True, help="a synthetic world folder (the demo's out/synth)")
    parser.add_argument("--scene", default="synth-0000")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--ahead", type=int, default=6, help="look-ahead in keys (a prediction call's new keys)")
    parser.add_argument("--walls", default="none,6,10", help="comma list of wall distances in m ('none': no walls)")
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_ego_warp.json")
    args = parser.parse_args()
    walls = [None if w == "none" else float(w) for w in args.walls.split(",")]
    result = measure(args.cascade, args.synth, args.scene, args.seconds, args.ahead, walls)
    result["date"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for name, values in result["latent_mse_by_keys_ahead"].items():
        log.info("%-18s %s", name, " ".join("-" if v is None else f"{v:.4f}" for v in values))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
