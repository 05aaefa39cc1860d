"""Generation speed and memory: drivesim's rollout engine beside a plain diffusers loop.

Random-weight models built from conf/model/{micro,tiny}.yaml (speed does not depend on the weights):
1. seconds per output frame and real-time factor (seconds of video per second of compute), per stage
   (image, prediction, decode) and per sampler / steps, for a 10-second rollout with box guidance
   (two guidance branches per call, as CFG doubles the batch);
2. the same frames through a plain loop over diffusers' own pieces (DDIMScheduler, the image
   UNet2DConditionModel with the batch doubled for CFG, AutoencoderKL.decode) at matched size and steps;
3. micro: peak RSS and seconds per frame of a long rollout over those of a 10-second rollout, each
   in its own process (both ratios should be <= 1.1: memory and per-frame cost do not grow with length).

    python benchmarks/bench_generate.py                 # about 3 minutes on 2 CPU cores
    python benchmarks/bench_generate.py --long-seconds 600 --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import yaml
from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, UNet2DConditionModel

from drivesim.models import build_video_unet
from drivesim.models.vae import VideoVAE
from drivesim.pipelines.conditions import SceneInputs
from drivesim.pipelines.engine import Engine, SamplerSettings, StageModel
from drivesim.pipelines.rollout import rollout_to_folder
from drivesim.scenario import PinholeCamera, Timeline, parse_scenario

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
FPS = 3.0
SCHEDULE = dict(DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012).config)
SCENARIO = {"labels": {"time_of_day": "night"}, "ego": {"speed": [[0, 10.0]], "yaw_rate": [[0, 0.0]]},
            "agents": [{"id": "lead", "class": "car", "size": [4.5, 1.9, 1.6], "track": [[0, 20.0, 0.0, 0.0]]},
                       {"id": "left", "class": "truck", "size": [8.0, 2.5, 3.0], "track": [[0, 14.0, 3.5, 0.0]]}]}


def model_config(name: str) -> dict[str, Any]:
    cfg = yaml.safe_load((ROOT / "conf" / "model" / f"{name}.yaml").read_text())
    cfg.pop("defaults", None)
    cfg.pop("text_encoder", None)
    return cfg


def build(name: str, device: str, steps: int, sampler: str = "ddim",
          interpolation: bool = False) -> tuple[Engine, dict[str, Any]]:
    """Random-weight stages of `name`; with `interpolation`, an x4 model on 5-frame windows (2 key frames)."""
    torch.manual_seed(0)
    cfg = model_config(name)
    ae_cfg = cfg.pop("autoencoder")
    vae = VideoVAE(AutoencoderKL(**ae_cfg).eval()).to(device)
    latent = tuple(int(s) for s in cfg["latent_size"])
    interp = None
    if interpolation:
        icfg = {**cfg, "conditioning": {**(cfg.get("conditioning") or {}), "stage": True}}
        interp = StageModel(build_video_unet(icfg).eval().to(device), 5, 0.1)
    engine = Engine(prediction=StageModel(build_video_unet(cfg).eval().to(device), int(cfg["num_frames"]), 0.1),
                    image=StageModel(build_video_unet(cfg).eval().to(device), 1), vae=vae, schedule=SCHEDULE,
                    sampler=SamplerSettings(name=sampler, steps=steps, guidance={"boxes": 2.0}), fps=FPS,
                    latent_size=(latent[0], latent[1]), device=device, interpolation=interp)
    return engine, cfg


def rollout(engine: Engine, seconds: float, out: Path) -> dict[str, Any]:
    h, w = engine.latent_size[0] * engine.vae.downscale, engine.latent_size[1] * engine.vae.downscale
    timeline = Timeline(parse_scenario(SCENARIO, "bench"), PinholeCamera.mounted(w, h))
    per_frame: list[float] = []  # wall seconds per output frame of each prediction chunk
    run_chunk = engine.run_chunk

    def timed(chunk, *rest):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        result = run_chunk(chunk, *rest)
        if chunk.kind == "predict" and len(result.frames):
            per_frame.append((time.perf_counter() - t0) / len(result.frames))
        return result

    engine.run_chunk = timed  # type: ignore[method-assign]
    start = time.perf_counter()
    result = rollout_to_folder(engine, timeline, SceneInputs(labels=[1, -1, -1]), out, 0, seconds, {"bench": 1},
                               show_progress=False)
    wall = time.perf_counter() - start
    engine.run_chunk = run_chunk  # type: ignore[method-assign]
    compute = sum(result.seconds.values())
    tenth = max(1, len(per_frame) // 10)
    return {"frames": result.frames, "fps": engine.out_fps, "seconds_per_frame": compute / result.frames,
            # Robust to other processes' bursts on a shared machine: the median chunk, and the first
            # and last tenth of the chunks (a cost growing with length shows as last / first > 1).
            "chunk_seconds_per_frame_median": statistics.median(per_frame),
            "chunk_last_over_first_tenth": statistics.mean(per_frame[-tenth:]) / statistics.mean(per_frame[:tenth]),
            "seconds_per_frame_with_writing": wall / result.frames,
            "realtime_factor": result.frames / engine.out_fps / compute,
            "stage_seconds_per_frame": {k: v / result.frames for k, v in sorted(result.seconds.items())}}


@torch.no_grad()
def plain_diffusers(name: str, device: str, steps: int, frames: int) -> dict[str, Any]:
    """The reference: DDIM + the image UNet (CFG: batch doubled) + AutoencoderKL decode, per chunk of T frames."""
    torch.manual_seed(0)
    cfg = model_config(name)
    unet = UNet2DConditionModel(**cfg["unet"]).eval().to(device)
    vae = AutoencoderKL(**cfg["autoencoder"]).eval().to(device)
    scheduler = DDIMScheduler.from_config(SCHEDULE, timestep_spacing="trailing")
    t_frames = int(cfg["num_frames"])
    h, w = cfg["latent_size"]
    text = torch.zeros(2 * t_frames, 1, int(cfg["unet"]["cross_attention_dim"]), device=device)
    g = torch.Generator().manual_seed(0)
    done, start = 0, time.perf_counter()
    while done < frames:
        scheduler.set_timesteps(steps)
        x = torch.randn(t_frames, 4, h, w, generator=g).to(device)
        for t in scheduler.timesteps:
            out = unet(torch.cat([x, x]), t, encoder_hidden_states=text).sample
            uncond, cond = out.chunk(2)
            x = scheduler.step(uncond + 2.0 * (cond - uncond), t, x).prev_sample
        new = min(t_frames - 2, frames - done)  # as many new frames per chunk as the rollout's context leaves
        pixels = torch.cat([vae.decode(p / vae.config.scaling_factor).sample for p in x[-new:].split(8)])
        (pixels.clamp(-1, 1) * 127.5 + 127.5).to(torch.uint8).cpu()
        done += new
    wall = time.perf_counter() - start
    return {"frames": frames, "seconds_per_frame": wall / frames, "realtime_factor": frames / FPS / wall}


def child(args: argparse.Namespace) -> None:
    """One rollout in this process; prints its peak RSS and seconds per frame as JSON."""
    torch.set_num_threads(args.threads)
    engine, _ = build("micro", args.device, args.steps)
    with tempfile.TemporaryDirectory() as tmp:
        stats = rollout(engine, args.seconds, Path(tmp))
    stats["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(stats))


def in_child(seconds: float, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", "--seconds", str(seconds), "--steps", str(args.long_steps),
           "--device", args.device, "--threads", str(args.threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", default="micro,tiny")
    # sampler:steps, "+i" adds x4 interpolation (output at 4 x 3 fps)
    parser.add_argument("--settings", default="ddim:4,ddim:10,dpmpp_2m:10,euler:10,ddim:10+i")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--long-seconds", type=float, default=600.0)
    parser.add_argument("--long-steps", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--no-scaling", action="store_true", help="skip the long-rollout scaling check")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    torch.set_num_threads(args.threads)
    record: dict[str, Any] = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                              "machine": platform.machine(), "device": args.device, "threads": args.threads,
                              "torch": torch.__version__, "fps": FPS, "seconds": args.seconds, "models": {}}
    for name in args.models.split(","):
        rows = {}
        for setting in args.settings.split(","):
            sampler, steps = setting.removesuffix("+i").split(":")
            engine, _ = build(name, args.device, int(steps), sampler, interpolation=setting.endswith("+i"))
            with tempfile.TemporaryDirectory() as tmp:
                rows[setting] = rollout(engine, args.seconds, Path(tmp))
            print(f"{name} {setting}: {rows[setting]['seconds_per_frame']:.4f} s/frame, "
                  f"RTF {rows[setting]['realtime_factor']:.2f}", flush=True)
        reference = plain_diffusers(name, args.device, args.steps, round(args.seconds * FPS))
        print(f"{name} plain diffusers ddim:{args.steps}: {reference['seconds_per_frame']:.4f} s/frame", flush=True)
        record["models"][name] = {"engine": rows, f"plain_diffusers_ddim:{args.steps}": reference}
    if not args.no_scaling:
        short = in_child(args.seconds, args)
        long = in_child(args.long_seconds, args)
        record["scaling_micro"] = {
            "steps": args.long_steps, "short": short, "long": long, "long_seconds": args.long_seconds,
            "rss_ratio": long["peak_rss_mb"] / short["peak_rss_mb"],
            "seconds_per_frame_ratio": long["seconds_per_frame_with_writing"] / short["seconds_per_frame_with_writing"],
            "median_chunk_seconds_per_frame_ratio": (long["chunk_seconds_per_frame_median"]
                                                     / short["chunk_seconds_per_frame_median"]),
            "load_average": list(os.getloadavg())}
        print(json.dumps(record["scaling_micro"], indent=1), flush=True)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"bench_generate_{args.device}_{args.models.replace(',', '_')}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"written {path}")


if __name__ == "__main__":
    main()
