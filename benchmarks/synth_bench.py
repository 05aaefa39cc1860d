"""The synthetic benchmark (issue 11): the shipped cascade against the floor, the autoencoder ceiling,
copy-last-frame and the image model frame by frame, all under one protocol (default synth-bench-v1).

    python benchmarks/synth_bench.py                       # the packaged cascade, full protocol
    python benchmarks/synth_bench.py --cascade DIR --metrics fid_synth fvd_synth layout temporal action

Drives: every scene of the protocol's held-out seeds (rendered once into $DRIVESIM_CACHE/benchmarks/,
which is also `evaluate_folder`'s real side), each replayed from its first two rendered key frames,
as long as the scene allows (or --seconds). Every method writes the same frames of the same drives
in `drivesim generate`'s format, conditioned on (and judged against) the same replayed boxes:
  real             rendered drives of other seeds (held-out + 100), same settings: the floor, real against
                   real (the held-out frames themselves would score 0 and say nothing)
  autoencoder      the rendered frames through the cascade's autoencoder and back (the latent ceiling)
  copy_last_frame  the last context frame, held
  image_model      the cascade's image model, each frame on its own (no temporal layers), same conditions
  cascade          `drivesim demo`'s replay path (one engine: drivesim.demo.replay_drive)
Videos go under --work, each method's with the settings they depend on (<method>/stamp.json) and its scores
(<method>/scores.json): a killed run resumes there (finished drives are kept), and benchmarking another
cascade regenerates and measures only what depends on the changed exports (a new prediction or
interpolation model: the cascade's drives only; the baselines keep their videos and scores).
Writes <out>.json and <out>.md (default benchmarks/results/synth_bench); videos under --work.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from omegaconf import OmegaConf

from drivesim.atomic import atomic_write_text
from drivesim.config import compose_command
from drivesim.config.protocol import ProtocolConfig
from drivesim.demo.run import CascadePlan, DemoError, plan_cascade, replay_drive
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
FLOOR_SEED_OFFSET = 100  # the floor's real drives: seeds 90101.. beside the held-out 90001..


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
    generate_only: bool = False  # write (or resume) the videos, measure later


def drives_of(protocol: ProtocolConfig, limit: int | None) -> list[tuple[Path, str]]:
    found = []
    for root in synth_benchmark_roots(protocol):
        found += [(root, str(s["name"])) for s in json.loads((root / "v1.0-synth" / "scene.json").read_text())]
    return found[:limit] if limit else found


def _rendered(root: Path, scene: str, times: np.ndarray, fps: float, size: tuple[int, int]) -> torch.Tensor:
    from drivesim.pipelines.scene_clips import data_config, load_scene_clip

    data = data_config("synthetic", {"root": str(root)}, "synth_bench")
    frames = load_scene_clip(data, scene, times, fps, size, 0, "synth_bench", with_boxes=False).clip.frames
    if frames.shape[0] < len(times):  # past the scene's end: its last frame (as the replay holds its boxes)
        frames = torch.cat([frames, frames[-1:].expand(len(times) - frames.shape[0], -1, -1, -1)])
    return frames


def total_walls(work: Path) -> dict[str, float]:
    """Wall seconds per method over every finished drive: the engine's own stage seconds for the cascade
    (they add up across resumes), `wall` of run.json for the methods written here."""
    walls = dict.fromkeys(METHODS, 0.0)
    for method in METHODS:
        for run in (work / method).glob("*/run.json"):
            record = json.loads(run.read_text())
            if method == "cascade":
                walls[method] += sum(float(v) for v in record["stage_seconds"].values())
            elif "wall" in record:
                walls[method] += float(record["wall"])
            else:
                raise DemoError(f"{run}: no wall seconds recorded (written by another version of this benchmark)")
    return walls


def _done(folder: Path) -> bool:
    return (folder / "run.json").is_file()  # written last: the video and conditions are complete


def _write(folder: Path, frames: torch.Tensor, conditions: Path, record: dict[str, Any], method: str,
           fps: float, wall: float = 0.0) -> None:
    """The drive in generate's format; run.json (with the wall seconds it took) last."""
    folder.mkdir(parents=True, exist_ok=True)
    write_mp4(folder / "video.mp4", frames, fps)
    if conditions != folder / "conditions.jsonl":
        shutil.copy2(conditions, folder / "conditions.jsonl")  # the same boxes for every method of a drive
    atomic_write_text(folder / "run.json",
                      json.dumps({"fps": fps, "method": method, "wall": wall, **record}, default=str) + "\n")


def _write_conditions(path: Path, job: Any, n: int, fps: float) -> None:
    """conditions.jsonl of a drive that is not generated (the floor): the replayed boxes, as the engine writes them."""
    lines = [json.dumps(job.timeline.at(i / fps).to_json(i)) for i in range(n)]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "\n".join(lines) + "\n")


@torch.no_grad()
def _autoencoder(job: Any, frames: torch.Tensor) -> torch.Tensor:
    vae = job.cascade.engine.vae
    parts = []
    for s in range(0, frames.shape[0], CHUNK):
        x = frames[s:s + CHUNK].float().div(127.5).sub(1.0)[None].to(vae.vae.dtype)  # the cascade's precision
        y = vae.decode_video(vae.encode_video(x), CHUNK)[0]
        parts.append(((y.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8))
    return torch.cat(parts)


@torch.no_grad()
def _image_model(job: Any, cfg: Any, n: int, fps: float, seed: int) -> Iterator[torch.Tensor]:
    """Each output frame sampled by the image model alone (temporal layers bypassed), same conditions."""
    from drivesim.diffusion.cfg import GuidedDenoiser
    from drivesim.diffusion.sampling import make_scheduler, sample_video
    from drivesim.pipelines.conditions import frame_condition
    from drivesim.pipelines.engine import chunk_generator, in_model_dtype
    from drivesim.pipelines.loading import sampler_settings

    engine, scene = job.cascade.engine, job.scene
    if engine.image is None:
        raise RuntimeError("the cascade has no image export")
    stage, s = engine.image, sampler_settings(cfg.sampler)
    h, w = engine.latent_size
    for c, first in enumerate(range(0, n, CHUNK)):
        times = [(first + k) / fps for k in range(min(CHUNK, n - first))]
        cond = frame_condition(job.timeline.frames(times), stage.supports, scene)
        cond.image_only = True  # frames folded into the batch: each one on its own
        gen = chunk_generator(seed, c)
        noise = torch.randn(1, len(times), engine.latent_channels, h, w, generator=gen)
        scheduler = make_scheduler(s.name, engine.schedule, s.timestep_spacing, s.eta)
        denoiser = GuidedDenoiser(in_model_dtype(stage.unet), s.guidance, s.guidance_mode, scene.null_text, s.max_batch)
        latents = sample_video(denoiser, scheduler, noise, cond, s.steps, None, gen)
        video = engine.vae.decode_video(latents, CHUNK)[0]
        yield ((video.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def floor_protocol(protocol: ProtocolConfig) -> ProtocolConfig:
    """The floor's drives: the held-out seeds + FLOOR_SEED_OFFSET, rendered exactly like the held-out ones.
    Real against real needs two different samples of the world (the same frames would give 0)."""
    from dataclasses import replace

    return replace(protocol, name=f"{protocol.name}-floor",
                   held_out_seeds=[int(s) + FLOOR_SEED_OFFSET for s in protocol.held_out_seeds])


def _write_drive(settings: BenchSettings, cfg: Any, plan: CascadePlan, root: Path, scene: str,
                 cascade: Any = None) -> Any:
    """Every method's video of one held-out drive (those already written are kept); returns the loaded cascade
    (reused for the next drive of this process)."""
    from drivesim.demo.run import replay_config
    from drivesim.pipelines.run import prepare
    from drivesim.pipelines.store import RolloutStore

    fps = plan.out_fps
    height, width = (int(s) for s in plan.stages["temporal"].size)
    start = plan.start_time(int(cfg.context_frames))
    methods = [m for m in METHODS if m != "real" and (m != "image_model" or "image" in plan.stages)]
    n = int(round(float(cfg.seconds) * fps))  # every method's drives and the floor's: the same frames
    name = f"{root.name}-{scene}"
    folder = {m: settings.work / m / name for m in METHODS}
    if all(_done(folder[m]) for m in methods):
        return cascade
    if not _done(folder["cascade"]):
        drive = replay_drive(cfg, plan, root, scene, folder["cascade"], show_progress=False)
        RolloutStore(drive.result.out).discard()
        job = drive.job  # its timeline already holds every frame's boxes (~20 s to prepare again)
    else:
        job = prepare(replay_config(cfg, plan, root, scene, folder["cascade"]), cascade)
    record = json.loads((folder["cascade"] / "run.json").read_text()).get("demo", {})
    conditions = folder["cascade"] / "conditions.jsonl"
    with conditions.open() as lines:
        if sum(1 for _ in lines) != n:
            raise DemoError(f"{conditions}: not {n} frames ({cfg.seconds} s at {fps:g} fps)")
    frames = _rendered(root, scene, start + (np.arange(n + 1) - 1) / fps, fps, (height, width))  # [last context, drive...]
    if not _done(folder["copy_last_frame"]):
        _write(folder["copy_last_frame"], frames[:1].expand(n, -1, -1, -1).contiguous(), conditions, record,
               "copy_last_frame", fps)
    if not _done(folder["autoencoder"]):
        t0 = time.perf_counter()
        video = _autoencoder(job, frames[1:])
        _write(folder["autoencoder"], video, conditions, record, "autoencoder", fps, time.perf_counter() - t0)
    if "image_model" in methods and not _done(folder["image_model"]):
        t0 = time.perf_counter()
        image = torch.cat(list(_image_model(job, cfg, n, fps, int(cfg.seed))))
        _write(folder["image_model"], image, conditions, record, "image_model", fps, time.perf_counter() - t0)
    return job.cascade


def _write_floor(settings: BenchSettings, cfg: Any, plan: CascadePlan, root: Path, scene: str,
                 cascade: Any = None) -> Any:
    """The floor's drive: another seed's rendered frames, with the boxes its replay would condition on."""
    from drivesim.demo.run import replay_config
    from drivesim.pipelines.run import prepare

    fps = plan.out_fps
    height, width = (int(s) for s in plan.stages["temporal"].size)
    n = int(round(float(cfg.seconds) * fps))
    folder_real = settings.work / "real" / f"{root.name}-{scene}"
    if _done(folder_real):
        return cascade
    job = prepare(replay_config(cfg, plan, root, scene, folder_real), cascade)
    _write_conditions(folder_real / "conditions.jsonl", job, n, fps)
    frames = _rendered(root, scene, plan.start_time(int(cfg.context_frames)) + np.arange(n) / fps, fps,
                       (height, width))
    _write(folder_real, frames, folder_real / "conditions.jsonl", {"floor_scene": scene, "synth": str(root)},
           "real", fps)
    return job.cascade


def make_methods(settings: BenchSettings, cfg: Any, plan: CascadePlan) -> None:
    """Write every method's videos of every drive under settings.work (drives already written are kept:
    a killed benchmark resumes), each with its wall seconds. One process on every thread: two 1-thread
    processes side by side took ~208 s of stage time per cascade drive against ~114 s for one 2-thread
    process (session 14), about 1.1x the throughput - not worth a process pool."""
    cascade = None
    for root, scene in drives_of(settings.protocol, settings.max_drives):
        cascade = _write_drive(settings, cfg, plan, root, scene, cascade)
    for root, scene in drives_of(floor_protocol(settings.protocol), settings.max_drives):
        cascade = _write_floor(settings, cfg, plan, root, scene, cascade)


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
    took = report.get("invocation_seconds")
    if took:
        lines += [f"This invocation: {took['generate']:.0f} s rendering and generating what was missing, "
                  f"{took['score']:.0f} s scoring what changed; "
                  "wall s above: each method's own generation seconds over all its drives.", ""]
    unavailable = {f"{m}/{k}": r for m, res in report["methods"].items() for k, r in res.get("unavailable", {}).items()}
    if unavailable:
        lines += ["Unavailable:", ""] + [f"- {k}: {r}" for k, r in sorted(unavailable.items())] + [""]
    settings.out.with_suffix(".md").write_text("\n".join(lines))


def cascade_identity(plan: CascadePlan) -> dict[str, str]:
    """Every stage export's weight digest: videos of a retrained or re-exported cascade never mix."""
    from drivesim.exports import folder_digest

    return {stage: folder_digest(export.path) for stage, export in sorted(plan.stages.items())}


#: The prediction sampler's fields that `_image_model` reads: the rest (context guidance, SDEdit strength, frame
#: correlation, context noise) cannot change its frames, so changing them keeps the image model's videos.
IMAGE_SAMPLER_FIELDS = ("name", "steps", "eta", "timestep_spacing", "guidance", "guidance_mode", "max_batch")


def image_sampler_stamp(sampler: dict[str, Any]) -> dict[str, Any]:
    """The part of the demo's prediction sampler the frame-by-frame image model runs with (no context)."""
    kept = {k: sampler.get(k) for k in IMAGE_SAMPLER_FIELDS}
    kept["guidance"] = {k: v for k, v in dict(sampler.get("guidance") or {}).items() if k != "context"}
    return kept


def method_stamps(settings: BenchSettings, cfg: Any, plan: CascadePlan) -> dict[str, str]:
    """Per method, everything that changes its videos (not their scores). A baseline does not depend on the
    model under test: benchmarking a retrained prediction or interpolation model regenerates the cascade's
    drives only (the floor, copy-last and the autoencoder also keep across image-model changes)."""
    video_keys = ("held_out_seeds", "render", "size", "fps", "camera")
    drives = {"protocol": {k: v for k, v in plain(settings.protocol).items() if k in video_keys},
              "seconds": cfg.seconds, "max_drives": settings.max_drives, "fps": plan.out_fps,
              "start": plan.start_time(int(cfg.context_frames)), "context_frames": int(cfg.context_frames),
              "floor_seed_offset": FLOOR_SEED_OFFSET}
    ids = cascade_identity(plan)
    from drivesim.pipelines.loading import resolve_precision

    demo = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))
    precision = resolve_precision(str(demo.get("precision", "fp32")), str(demo.get("device", "cpu")))
    autoencoder = {**drives, "autoencoder": ids.get("autoencoder", ids["temporal"]), "chunk": CHUNK,
                   **({"precision": precision} if precision != "fp32" else {})}
    image = {**autoencoder, "image": ids.get("image"), "sampler": image_sampler_stamp(demo["sampler"]),
             "schedule": plan.stages["temporal"].scheduler_config(), "seed": demo["seed"],
             "precision": precision, "device": demo.get("device")}
    stamps = {"real": drives, "copy_last_frame": drives, "autoencoder": autoencoder, "image_model": image,
              "cascade": {**drives, "cascade": ids, "demo": demo, "precision": precision}}
    return {m: json.dumps(v, sort_keys=True, default=str) for m, v in stamps.items()}


LEGACY_STAMP = "bench.json"
STAMP = "stamp.json"  # work/<method>/stamp.json: the settings its videos were written with
SCORES = "scores.json"  # work/<method>/scores.json: its measured metrics, with what they depend on
#: Version of this benchmark's scoring (the metric code it calls): part of every scores key; bump it when a
#: metric's computation changes, so that no method keeps scores of the old code.
SCORES_VERSION = 1


def prepare_work(settings: BenchSettings, stamps: dict[str, str]) -> None:
    """Keep each method's videos in --work when they were written with the same settings (a resume, or a
    benchmark of another cascade: the baselines stay); empty a method's folder when its settings differ."""
    if settings.work.exists():
        foreign = sorted(p.name for p in settings.work.iterdir() if p.name not in (*METHODS, LEGACY_STAMP))
        if foreign:
            raise DemoError(f"--work {settings.work} holds {foreign[0]}, not a benchmark's videos: not deleting it")
    (settings.work / LEGACY_STAMP).unlink(missing_ok=True)  # one stamp for all methods (session 11): superseded
    for method, wanted in stamps.items():
        folder = settings.work / method
        stamp = folder / STAMP
        if folder.exists():
            if stamp.is_file() and stamp.read_text() == wanted:
                log.info("%s: keeping its videos in %s", method, folder)
                continue
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        atomic_write_text(stamp, wanted)


@functools.cache
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    from drivesim.metrics.extractors import sha256_file

    return sha256_file(path)


def file_sha256(path: Path) -> str:
    """sha256 of a file, read once per run while its size and mtime stay (the Inception is ~90 MB and
    every method's scores key names it)."""
    st = path.stat()
    return _sha256_of(str(path.resolve()), st.st_size, st.st_mtime_ns)


def extractor_identity(groups: list[str]) -> dict[str, Any]:
    """The networks the scores come from: the FID Inception file's sha256 and the metric nets' files."""
    from drivesim.metrics.extractors import inception_path
    from drivesim.metrics.nets.weights import weights_dir

    inception = inception_path()
    nets = weights_dir()
    return {"inception": file_sha256(inception) if "fid" in groups and inception.is_file() else None,
            "nets": {p.name: file_sha256(p) for p in sorted(nets.glob("*.safetensors"))} if nets.is_dir() else {}}


def scores_key(settings: BenchSettings, stamp: str, fps: float) -> str:
    from drivesim import __version__
    from drivesim.metrics.suite import REAL_SIDE_VERSION

    return json.dumps({"videos": stamp, "protocol": plain(settings.protocol), "groups": sorted(settings.metrics),
                       "fps": fps, "code": [SCORES_VERSION, REAL_SIDE_VERSION, __version__],
                       "extractors": extractor_identity(settings.metrics)}, sort_keys=True, default=str)


def measure_method(settings: BenchSettings, method: str, stamp: str, fps: float) -> dict[str, Any]:
    """The method's scores: measured, or read back from its scores.json when nothing they depend on changed
    (videos, protocol, metric groups, scoring code, extractor files). A baseline is measured once per protocol."""
    folder = settings.work / method
    key = scores_key(settings, stamp, fps)
    saved = folder / SCORES
    if saved.is_file():
        record = json.loads(saved.read_text())
        if record.get("key") == key:
            log.info("%s: scores from %s (same videos, protocol and extractors)", method, saved)
            return dict(record["result"])
    result = measure(folder, settings.protocol, fps, settings.metrics, cache=True)
    atomic_write_text(saved, json.dumps({"key": key, "result": result}, default=str) + "\n")
    return result


def run_bench(settings: BenchSettings, command: str = "") -> dict[str, Any]:
    overrides = [*settings.demo_overrides] + ([f"cascade={settings.cascade}"] if settings.cascade else [])
    cfg = compose_command("demo", overrides)
    plan = plan_cascade(cfg.cascade, bool(cfg.allow_missing_interpolation))
    render = settings.protocol.render.seconds
    seconds = settings.seconds or (np.floor((render - plan.start_time(int(cfg.context_frames))) * plan.out_fps)
                                   / plan.out_fps)
    cfg.seconds = float(seconds)
    stamps = method_stamps(settings, cfg, plan)
    prepare_work(settings, stamps)
    began = time.perf_counter()
    make_methods(settings, cfg, plan)
    generated = time.perf_counter() - began
    if settings.generate_only:
        log.info("videos written under %s (--generate-only: not measured)", settings.work)
        return {}
    walls = total_walls(settings.work)
    written = [m for m in METHODS if any((settings.work / m).glob("*/run.json"))]
    scores = {m: measure_method(settings, m, stamps[m], plan.out_fps) for m in written}
    # This invocation's wall clock (rendering and generating what was missing, then scoring what changed): a
    # resumed or partial run shows only its own share; `wall_seconds` holds each method's generation seconds.
    invocation = {"generate": round(generated, 1), "score": round(time.perf_counter() - began - generated, 1)}
    methods = {m: {**scores[m], "wall_seconds": walls[m]} for m in written}
    first = next(iter(methods.values()))
    report = {"command": command, "protocol": first["protocol"], "cascade": str(plan.path), "fps": plan.out_fps,
              "missing_stages": plan.missing, "seconds_of_video": float(seconds),
              "drives": len(drives_of(settings.protocol, settings.max_drives)), "demo_config": OmegaConf.to_container(cfg),
              "wall_seconds": walls, "invocation_seconds": invocation, "methods": methods, "targets": targets(methods)}
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
    parser.add_argument("--generate-only", action="store_true", help="write the videos only (a later run measures)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/synth_bench"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from drivesim.metrics.protocol import load_protocol

    proto = plain(load_protocol(args.protocol))
    protocol = as_protocol(OmegaConf.merge(OmegaConf.create(proto), OmegaConf.from_dotlist(args.set)))  # type: ignore[arg-type]
    settings = BenchSettings(protocol, args.work, args.out, args.cascade, args.seconds, list(args.metrics),
                             list(args.demo), args.max_drives, args.generate_only)
    try:
        report = run_bench(settings, "python benchmarks/synth_bench.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    except DemoError as exc:
        sys.stderr.write(f"synth_bench: {exc}\n")
        return 2
    if args.generate_only:
        return 0
    print(settings.out.with_suffix(".md").read_text())
    return 0 if report["methods"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
