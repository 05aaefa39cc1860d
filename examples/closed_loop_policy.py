"""A policy drives drivesim's closed loop: cruise at a target speed, follow the lead car it sees.

    python examples/closed_loop_policy.py --checkpoint outputs/recipe/temporal/export --seconds 60 --out outputs/policy

The policy reads only what the simulator returns: the 2D boxes of the last frame. The lead car is
the box nearest the image centre line; its height in the frame stands in for its distance. It keeps
a target speed, brakes when the lead looks close, and steers (yaw rate) to keep the lead centred.
The scenario's agents move on their own tracks (world tracks here: the scenario gives no ego
motion), so how close the lead gets depends on the policy. Writes video.mp4, overlay.mp4 (boxes)
and actions.jsonl (one line per frame: time, speed, yaw rate, boxes).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from drivesim import Simulator
from drivesim.atomic import atomic_path
from drivesim.pipelines.writers import Mp4Writer, draw_boxes
from drivesim.simulator import Observation

log = logging.getLogger("closed_loop_policy")

# A lead car at 8 m/s in the world, starting 25 m ahead; a car parked on the right 120 m ahead.
SCENARIO: dict[str, Any] = {
    "name": "follow_the_lead",
    "labels": {"time_of_day": "day", "weather": "clear", "crowdedness": "sparse"},
    "agents": [
        {"id": "lead", "class": "car", "size": [4.5, 1.9, 1.6], "track": [[0, 25.0, 0.0, 0.0], [600, 4825.0, 0.0, 0.0]]},
        {"id": "parked", "class": "car", "size": [4.4, 1.8, 1.5], "track": [[0, 120.0, -3.5, 0.0], [600, 120.0, -3.5, 0.0]]},
    ],
}


@dataclass
class LeadFollower:
    target_speed: float = 10.0  # m/s
    accel: float = 1.5  # m/s^2, both ways
    close_height: float = 0.22  # lead box height (fraction of the frame) that counts as too close
    steer_gain: float = 0.3  # rad/s per unit of lead offset from the centre line
    speed: float = 0.0

    def act(self, obs: Observation, frames: int, fps: float) -> tuple[np.ndarray, np.ndarray]:
        """Speeds and yaw rates for the next `frames` frames, from the last frame's boxes."""
        lead = self._lead(obs)
        too_close = lead is not None and lead[3] - lead[1] > self.close_height
        goal = 0.5 * self.speed if too_close else self.target_speed
        speeds = []
        for _ in range(frames):
            step = np.clip(goal - self.speed, -self.accel / fps, self.accel / fps)
            self.speed = max(0.0, self.speed + float(step))
            speeds.append(self.speed)
        offset = 0.0 if lead is None else 0.5 * (lead[0] + lead[2]) - 0.5
        yaw = float(np.clip(-self.steer_gain * offset, -0.1, 0.1))  # box right of centre: turn right (negative)
        return np.array(speeds), np.full(frames, yaw)

    @staticmethod
    def _lead(obs: Observation) -> tuple[float, ...] | None:
        if not len(obs):
            return None
        boxes = [b.xyxy for b in obs.boxes[-1] if abs(0.5 * (b.xyxy[0] + b.xyxy[2]) - 0.5) < 0.2]
        return max(boxes, key=lambda b: b[3] - b[1]) if boxes else None


def drive(sim: Simulator, out: Path, seconds: float, seed: int, scenario: Any = None) -> int:
    """Run the policy for `seconds` of video into `out`; returns the frames written."""
    policy = LeadFollower()
    obs = sim.reset(scenario if scenario is not None else SCENARIO, seed=seed, ego_speed=0.0, ego_yaw_rate=0.0)
    total = max(1, round(seconds * sim.fps))
    written = 0
    out.mkdir(parents=True, exist_ok=True)
    with Mp4Writer(out / "video.mp4", sim.fps) as video, Mp4Writer(out / "overlay.mp4", sim.fps) as overlay, \
            atomic_path(out / "actions.jsonl") as tmp, tmp.open("w", encoding="utf-8") as actions:
        while True:
            for k in range(len(obs)):
                if written == total:
                    break
                frame = obs.frames[k].permute(1, 2, 0).numpy()
                video.write(frame)
                overlay.write(draw_boxes(frame, obs.boxes[k]))
                actions.write(json.dumps({"time": round(float(obs.times[k]), 4), "speed": float(obs.ego.speed[k]),
                                          "yaw_rate": float(obs.ego.yaw_rate[k]),
                                          "boxes": {b.id: [round(v, 4) for v in b.xyxy] for b in obs.boxes[k]}})
                              + "\n")
                written += 1
            if written == total:
                break
            n = sim.action_frames
            speeds, yaw = policy.act(obs, n, sim.fps)
            obs = sim.step(speeds, yaw)
            log.info("t=%.2f s speed %.1f m/s yaw %.3f rad/s", sim.time, speeds[-1], yaw[-1])
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, help="a temporal export or a cascade folder")
    parser.add_argument("--interpolation", default=None)
    parser.add_argument("--out", default="outputs/closed_loop")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=10, help="sampler steps")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sim = Simulator.from_pretrained(args.checkpoint, sampler={"steps": args.steps}, device=args.device,
                                    interpolation=args.interpolation)
    frames = drive(sim, Path(args.out), args.seconds, args.seed)
    log.info("%d frames (%.1f s at %g fps) -> %s", frames, frames / sim.fps, sim.fps, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
