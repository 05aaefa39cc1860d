"""The synthetic benchmark (issue 11): the shipped cascade against the floor, the autoencoder ceiling,
copy-last-frame and the image model frame by frame, all under one protocol (default synth-bench-v1).

    python benchmarks/synth_bench.py                       # the packaged cascade, full protocol
    python benchmarks/synth_bench.py --cascade DIR --metrics fid_synth fvd_synth layout temporal action

Drives: every scene of the protocol's held-out seeds (rendered once into $DRIVESIM_CACHE/benchmarks/,
which is also `evaluate_folder`'s real side), each replayed from its first two rendered key frames,
as long as the scene allows (or --seconds). Every method writes the same frames of the same drives
in `drivesim generate`'s format, conditioned on (and judged against) the same replayed boxes:
  real             the rendered frames themselves (the floor: same scenes as the real side)
  autoencoder      the rendered frames through the cascade's autoencoder and back (the latent ceiling)
  copy_last_frame  the last context frame, held
  image_model      the cascade's image model, each frame on its own (no temporal layers), same conditions
  cascade          `drivesim demo`'s replay path (one engine: drivesim.demo.replay_drive)
Writes <out>.json and <out>.md (default benchmarks/results/synth_bench); videos under --work.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

from drivesim.config import compose_command
from drivesim.config.protocol import ProtocolConfig
from drivesim.demo.run import CascadePlan, DemoError, Drive, plan_cascade, replay_drive
from drivesim.demo.scores import measure
from drivesim.metrics.baselines import write_mp4
from drivesim.metrics.protocol import as_protocol, plain
from drivesim.metrics.real import synth_benchmark_roots

log = logging.getLogger("synth_bench")
METHODS = ("real", "autoencoder", "copy_last_frame", "image_model", "cascade")
GROUPS = ["fid", "fid_synth", "fvd_synth", "layout", "temporal", "action"]
COLUMNS = ("fid", "fid_synth", "fvd_synth", "layout_recall", "temporal_warp", "temporal_flow", "action_speed",
           "action_yaw_rate")
CHUNK = 8


@dataclass
class BenchSettings:
    protocol: ProtocolConfig
    work: Path
    out: Path  # results stem: <out>.json, <out>.md
    cascade: str | None = None  # null: the packaged cascade
    seconds: float | None = None  # null: as long as each scene allows
    metrics: list[str] = field(default_factory=lambda: list(GROUPS))
    demo_overrides: list[str] = field(default_factory=list)  # conf/demo.yaml keys (sampler.steps=...)
    max_drives: int | None = None


def drives_of(protocol: ProtocolConfig, limit: int | None) -> list[tuple[Path, str]]:
    found = []
    for root in synth_benchmark_roots(protocol):
        found += [(root, str(s["name"])) for s in json.loads((root / "v1.0-synth" / "scene.json").read_text())]
    return found[:limit] if limit else found


def _rendered(root: Path, scene: str, times: np.ndarray, fps: float, size: tuple[int, int]) -> torch.Tensor:
    from drivesim.pipelines.scene_clips import data_config, load_scene_clip

    data = data_config("synthetic", {"root": str(root)}, "synth_bench")
    frames = load_scene_clip(data, scene, times, fps, size, 0, "synth_bench").clip.frames
    if frames.shape[0] < len(times):  # past the scene's end: its last frame (as the replay holds its boxes)
        frames = torch.cat([frames, frames[-1:].expand(len(times) - frames.shape[0], -1, -1, -1)])
    return frames


def _write(folder: Path, frames: torch.Tensor, drive: Drive, method: str, fps: float) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_mp4(folder / "video.mp4", frames, fps)
    shutil.copy2(drive.result.out / "conditions.jsonl", folder / "conditions.jsonl")  # the same boxes for all
    (folder / "run.json").write_text(json.dumps({"fps": fps, "method": method, **drive.record}, default=str) + "\n")


@torch.no_grad()
def _autoencoder(drive: Drive, frames: torch.Tensor) -> torch.Tensor:
    vae = drive.job.cascade.engine.vae
    parts = []
    for s in range(0, frames.shape[0], CHUNK):
        x = frames[s:s + CHUNK].float().div(127.5).sub(1.0)[None]
        y = vae.decode_video(vae.encode_video(x), CHUNK)[0]
        parts.append(((y.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8))
    return torch.cat(parts)


@torch.no_grad()
def _image_model(drive: Drive, cfg: Any, n: int, fps: float, seed: int) -> Iterator[torch.Tensor]:
    """Each output frame sampled by the image model alone (temporal layers bypassed), same conditions."""
    from drivesim.diffusion.cfg import GuidedDenoiser
    from drivesim.diffusion.sampling import make_scheduler, sample_video
    from drivesim.pipelines.conditions import frame_condition
    from drivesim.pipelines.engine import chunk_generator
    from drivesim.pipelines.loading import sampler_settings

    engine, scene = drive.job.cascade.engine, drive.job.scene
    if engine.image is None:
        raise RuntimeError("the cascade has no image export")
    stage, s = engine.image, sampler_settings(cfg.sampler)
    h, w = engine.latent_size
    for c, first in enumerate(range(0, n, CHUNK)):
        times = [(first + k) / fps for k in range(min(CHUNK, n - first))]
        cond = frame_condition(drive.job.timeline.frames(times), stage.supports, scene)
        cond.image_only = True  # frames folded into the batch: each one on its own
        gen = chunk_generator(seed, c)
        noise = torch.randn(1, len(times), engine.latent_channels, h, w, generator=gen)
        scheduler = make_scheduler(s.name, engine.schedule, s.timestep_spacing, s.eta)
        denoiser = GuidedDenoiser(stage.unet, s.guidance, s.guidance_mode, scene.null_text, s.max_batch)
        latents = sample_video(denoiser, scheduler, noise, cond, s.steps, None, gen)
        video = engine.vae.decode_video(latents, CHUNK)[0]
        yield ((video.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def make_methods(settings: BenchSettings, cfg: Any, plan: CascadePlan) -> dict[str, float]:
    """Write every method's videos of every drive under settings.work; returns wall seconds per method."""
    from drivesim.pipelines.store import RolloutStore

    fps, walls = plan.out_fps, dict.fromkeys(METHODS, 0.0)
    height, width = (int(s) for s in plan.stages["temporal"].size)
    size = (height, width)
    start = plan.start_time(int(cfg.context_frames))
    for root, scene in drives_of(settings.protocol, settings.max_drives):
        name = f"{root.name}-{scene}"
        t0 = time.perf_counter()
        drive = replay_drive(cfg, plan, root, scene, settings.work / "cascade" / name, show_progress=False)
        RolloutStore(drive.result.out).discard()
        walls["cascade"] += time.perf_counter() - t0
        n = drive.result.frames
        frames = _rendered(root, scene, start + (np.arange(n + 1) - 1) / fps, fps, size)  # [last context, drive...]
        _write(settings.work / "real" / name, frames[1:], drive, "real", fps)
        _write(settings.work / "copy_last_frame" / name, frames[:1].expand(n, -1, -1, -1).contiguous(), drive,
               "copy_last_frame", fps)
        t0 = time.perf_counter()
        _write(settings.work / "autoencoder" / name, _autoencoder(drive, frames[1:]), drive, "autoencoder", fps)
        walls["autoencoder"] += time.perf_counter() - t0
        if drive.job.cascade.engine.image is not None:
            t0 = time.perf_counter()
            image = torch.cat(list(_image_model(drive, cfg, n, fps, int(cfg.seed))))
            _write(settings.work / "image_model" / name, image, drive, "image_model", fps)
            walls["image_model"] += time.perf_counter() - t0
    return walls


def targets(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets, checked on the measured values (None where a figure is missing)."""
    def v(method: str, metric: str) -> float | None:
        value = results.get(method, {}).get("metrics", {}).get(metric, {}).get("value")
        return None if value is None else float(value)

    def lower(a: float | None, b: float | None) -> bool | None:
        return None if a is None or b is None else a < b

    casc, copy, ae = v("cascade", "fvd_synth"), v("copy_last_frame", "fvd_synth"), v("autoencoder", "fvd_synth")
    half = None if None in (casc, copy, ae) else (copy - casc) >= 0.5 * (copy - ae)  # type: ignore[operator]
    lay_c, lay_ae = v("cascade", "layout_recall"), v("autoencoder", "layout_recall")
    return {"fvd_synth_beats_copy_last_frame": lower(casc, copy),
            "fvd_synth_beats_image_model": lower(casc, v("image_model", "fvd_synth")),
            "temporal_warp_beats_copy_last_frame": lower(v("cascade", "temporal_warp"), v("copy_last_frame", "temporal_warp")),
            "temporal_warp_beats_image_model": lower(v("cascade", "temporal_warp"), v("image_model", "temporal_warp")),
            "closes_half_fvd_synth_gap_to_autoencoder": half,
            "layout_at_least_0.8_of_autoencoder": None if None in (lay_c, lay_ae) else lay_c >= 0.8 * lay_ae}  # type: ignore[operator]


def _cell(record: dict[str, Any] | None) -> str:
    if not record or record.get("value") is None:
        return "n/a"
    slope = (record.get("drift") or {}).get("slope_per_second")
    return f"{record['value']:.4g}" + (f" ({slope:+.2g}/s)" if slope is not None else "")


def write_results(settings: BenchSettings, report: dict[str, Any]) -> None:
    settings.out.parent.mkdir(parents=True, exist_ok=True)
    settings.out.with_suffix(".json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    lines = [f"# Synthetic benchmark ({report['protocol']['name']})", "",
             f"Command: `{report['command']}`. {report['drives']} held-out drives of {report['seconds_of_video']:.1f} s "
             f"at {report['fps']:g} fps; cascade `{report['cascade']}`. Value (drift slope per second); lower is "
             "better except layout_recall. n/a: not measured (see `unavailable` in the JSON).", "",
             "| method | " + " | ".join(COLUMNS) + " | wall s |", "|---" * (len(COLUMNS) + 2) + "|"]
    for method in METHODS:
        res = report["methods"].get(method, {})
        cells = [_cell(res.get("metrics", {}).get(c)) for c in COLUMNS]
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {report['wall_seconds'].get(method, 0):.0f} |")
    lines += ["", "Targets (issue 11): " + ", ".join(f"{k}: {v}" for k, v in report["targets"].items()), ""]
    unavailable = {f"{m}/{k}": r for m, res in report["methods"].items() for k, r in res.get("unavailable", {}).items()}
    if unavailable:
        lines += ["Unavailable:", ""] + [f"- {k}: {r}" for k, r in sorted(unavailable.items())] + [""]
    settings.out.with_suffix(".md").write_text("\n".join(lines))


def run_bench(settings: BenchSettings, command: str = "") -> dict[str, Any]:
    overrides = [*settings.demo_overrides] + ([f"cascade={settings.cascade}"] if settings.cascade else [])
    cfg = compose_command("demo", overrides)
    plan = plan_cascade(cfg.cascade, bool(cfg.allow_missing_interpolation))
    render = settings.protocol.render.seconds
    seconds = settings.seconds or (np.floor((render - plan.start_time(int(cfg.context_frames))) * plan.out_fps)
                                   / plan.out_fps)
    cfg.seconds = float(seconds)
    if settings.work.exists():
        foreign = sorted(p.name for p in settings.work.iterdir() if p.name not in METHODS)
        if foreign:
            raise DemoError(f"--work {settings.work} holds {foreign[0]}, not a benchmark's videos: not deleting it")
        shutil.rmtree(settings.work)
    walls = make_methods(settings, cfg, plan)
    methods = {}
    for method in METHODS:
        folder = settings.work / method
        if folder.is_dir():
            methods[method] = measure(folder, settings.protocol, plan.out_fps, settings.metrics, cache=True)
            methods[method]["wall_seconds"] = walls[method]
    first = next(iter(methods.values()))
    report = {"command": command, "protocol": first["protocol"], "cascade": str(plan.path), "fps": plan.out_fps,
              "missing_stages": plan.missing, "seconds_of_video": float(seconds),
              "drives": len(drives_of(settings.protocol, settings.max_drives)), "demo_config": OmegaConf.to_container(cfg),
              "wall_seconds": walls, "methods": methods, "targets": targets(methods)}
    write_results(settings, report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cascade", default=None, help="a cascade folder (default: the packaged one)")
    parser.add_argument("--protocol", default="synth-bench-v1")
    parser.add_argument("--set", nargs="*", default=[], help="protocol overrides key=value (the record shows them)")
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--metrics", nargs="*", default=GROUPS)
    parser.add_argument("--demo", nargs="*", default=[], help="conf/demo.yaml overrides (e.g. sampler.steps=10)")
    parser.add_argument("--max-drives", type=int, default=None)
    parser.add_argument("--work", type=Path, default=Path("outputs/synth_bench"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/synth_bench"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from drivesim.metrics.protocol import load_protocol

    proto = plain(load_protocol(args.protocol))
    protocol = as_protocol(OmegaConf.merge(OmegaConf.create(proto), OmegaConf.from_dotlist(args.set)))  # type: ignore[arg-type]
    settings = BenchSettings(protocol, args.work, args.out, args.cascade, args.seconds, list(args.metrics),
                             list(args.demo), args.max_drives)
    try:
        report = run_bench(settings, "python benchmarks/synth_bench.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    except DemoError as exc:
        sys.stderr.write(f"synth_bench: {exc}\n")
        return 2
    print(settings.out.with_suffix(".md").read_text())
    return 0 if report["methods"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
