"""`drivesim generate`: check everything, then roll out one video per seed into `out=` (resumable).

Every input problem (export, scenario, camera, replay scene, a different run already in `out=`) is
found before anything is written and reported as one line with exit code 2.
"""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from drivesim.data.errors import DataError
from drivesim.exports import ExportError
from drivesim.pipelines.conditions import SceneInputs, Supports
from drivesim.pipelines.loading import GenerateError, LoadedCascade, load_cascade
from drivesim.pipelines.rollout import GivenContext, rollout_to_folder
from drivesim.pipelines.store import RolloutStore, RunMismatchError
from drivesim.scenario.camera import resolve_camera
from drivesim.scenario.from_config import scenario_from_config
from drivesim.scenario.spec import Scenario, ScenarioError
from drivesim.scenario.timeline import Timeline

log = logging.getLogger(__name__)
EXIT_USAGE = 2
DEFAULT_SECONDS = 10.0
# Keys that do not change what a run produces (excluded from the resume check).
_NOT_IDENTITY = ("out", "resume", "seeds")


@dataclass
class Job:
    cascade: LoadedCascade
    scenario: Scenario
    timeline: Timeline
    scene: SceneInputs
    seconds: float
    given: GivenContext | None
    runs: list[tuple[int, Path, dict[str, Any]]]  # seed, folder, settings


def run_generate(cfg: DictConfig) -> int:
    if cfg.get("scenarios") or cfg.get("replay_split"):
        from drivesim.pipelines.predict import run_predict

        return run_predict(cfg)
    try:
        job = prepare(cfg)
    except (GenerateError, ScenarioError, ExportError, RunMismatchError, DataError) as exc:
        sys.stderr.write(f"drivesim generate: {' '.join(str(exc).split())}\n")
        return EXIT_USAGE
    for seed, folder, settings in job.runs:
        for line in run_one(job, cfg, seed, folder, settings):
            sys.stdout.write(f"{line}\n")
    return 0


def run_one(job: Job, cfg: DictConfig, seed: int, folder: Path, settings: dict[str, Any]) -> list[str]:
    """Roll out one seed of a prepared job into `folder` (and the dataset, format=nuscenes); the paths made."""
    lines: list[str] = []
    log.info("seed %d -> %s (%d s at %g fps)", seed, folder, job.seconds, job.cascade.engine.out_fps)
    result = rollout_to_folder(job.cascade.engine, job.timeline, job.scene, folder, seed, job.seconds, settings,
                               resume=bool(cfg.resume), given=job.given, record=_record(job))
    for path in result.paths.values():
        lines.append(str(path))
    if cfg.format == "nuscenes":
        from drivesim.pipelines.nuscenes_export import export_rollout

        name = export_rollout(folder, job.scenario, job.timeline.camera, job.cascade.engine.out_fps, seed,
                              cfg.out, str(cfg.dataset_version))
        lines.append(f"{Path(cfg.out) / str(cfg.dataset_version)} scene {name}")
    if job.cascade.upsampler is not None:
        from drivesim.pipelines.upsample import upsample_folder

        hr = upsample_folder(job.cascade.upsampler, folder, seed, job.cascade.engine.out_fps, result.frames,
                             _upsample_seconds(cfg))
        lines.append(str(hr))
    return lines


def _upsample_seconds(cfg: DictConfig) -> float | None:
    """`upsample_seconds`, else 2 s on CPU and the whole video on a GPU (None)."""
    from drivesim.pipelines.upsample import CPU_SECONDS

    if cfg.upsample_seconds is not None:
        return float(cfg.upsample_seconds)
    return CPU_SECONDS if str(cfg.device) == "cpu" else None


def cascade_from_config(cfg: DictConfig, device: str | None = None, precision: str | None = None) -> LoadedCascade:
    """The exports a `generate` config names, loaded on `device` (default: `cfg.device`) in `precision`
    (default: `cfg.precision`)."""
    return load_cascade(cfg.checkpoint, cfg.interpolation, cfg.sampler, passes=int(cfg.interpolation_passes),
                        device=str(device or cfg.device), precision=str(precision or cfg.precision),
                        context_frames=int(cfg.context_frames), decode_chunk=int(cfg.decode_chunk),
                        upsampler=cfg.upsampler, decoder=cfg.decoder, lora=cfg.lora,
                        prediction_window=cfg.get("prediction_window"))


def prepare(cfg: DictConfig, cascade: LoadedCascade | None = None) -> Job:
    """Load and check every input (the exports unless `cascade` is given); raises one-line errors, writes nothing."""
    cascade = cascade or cascade_from_config(cfg)
    if cfg.upsample_seconds is not None and not float(cfg.upsample_seconds) > 0:
        raise GenerateError(f"upsample_seconds={cfg.upsample_seconds}: must be > 0")
    if cfg.format not in ("video", "nuscenes"):
        raise GenerateError(f"format={cfg.format}: video or nuscenes")
    engine = cascade.engine
    if cfg.get("interpolation_sampler") is not None:
        if not isinstance(cfg.interpolation_sampler, DictConfig):
            raise GenerateError(f"interpolation_sampler={cfg.interpolation_sampler}: pick a sampler as "
                                "sampler@interpolation_sampler=ddim (then interpolation_sampler.steps=N)")
        if engine.interpolation is not None:
            from drivesim.pipelines.loading import sampler_settings

            engine.interpolation.sampler = sampler_settings(cfg.interpolation_sampler)
    engine.validate()
    given: GivenContext | None = None
    if cfg.scenario.get("replay") is not None:
        from drivesim.pipelines.replay import load_replay

        seconds = _seconds(cfg.seconds, cfg.scenario.seconds)
        replay = load_replay(cfg.scenario.replay, cascade, seconds)
        scenario, given = replay.scenario, replay.given
    else:
        scenario = scenario_from_config(cfg.scenario)
        seconds = _seconds(cfg.seconds, scenario.seconds)
        if scenario.start is not None:
            from drivesim.pipelines.replay import load_start

            given = load_start(scenario.start, scenario.source, cascade, seconds)
    h, w = cascade.size
    camera = resolve_camera(scenario.camera, cascade.prediction.camera, cascade.prediction.size, h, w)
    timeline = Timeline(scenario, camera)
    if cfg.scenario.get("replay") is not None:
        # A replayed scene's agents outside the generated time or view are simply not drawn.
        unseen = set(timeline.unseen(seconds, engine.out_fps))
        added = {str(a.get("id")) for a in cfg.scenario.replay.add}
        if unseen & added:
            raise ScenarioError(f"scenario.replay.add: agents[{sorted(unseen & added)[0]}]: never in view of the "
                                f"camera during the {seconds:g} s generated")
        timeline = timeline.without(unseen)
        scenario = timeline.scenario
    else:
        timeline.check_in_view(seconds, engine.out_fps)
    scene = _scene_inputs(scenario, cascade)
    seeds = [int(s) for s in cfg.seeds] if cfg.seeds else [int(cfg.seed)]
    if len(set(seeds)) != len(seeds):
        raise GenerateError(f"seeds={seeds}: repeated seed")
    base = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(base, dict)
    identity: dict[str, Any] = {str(k): v for k, v in base.items() if k not in _NOT_IDENTITY}
    identity["seconds"] = seconds
    identity["precision"] = cascade.precision  # `auto` resolved: a resume elsewhere must not mix precisions
    identity["camera"] = camera.to_json()
    runs: list[tuple[int, Path, dict[str, Any]]] = []
    for seed in seeds:
        folder = Path(cfg.out) / f"seed_{seed}" if len(seeds) > 1 else Path(cfg.out)
        if cfg.format == "nuscenes":  # out= is the dataset; the rollouts (resumable) live beside its tables
            from drivesim.pipelines.nuscenes_export import scene_name

            folder = Path(cfg.out) / "rollouts" / scene_name(scenario.name, seed)
        settings = {**identity, "seed": seed}
        RolloutStore(folder).check_config(settings, bool(cfg.resume))
        runs.append((seed, folder, settings))
    return Job(cascade, scenario, timeline, scene, seconds, given, runs)


def _record(job: Job) -> dict[str, Any]:
    """What run.json adds about the models: the exports per stage, their windows and context noise levels."""
    engine = job.cascade.engine
    stages = {"prediction": engine.prediction, "image": engine.image, "interpolation": engine.interpolation}
    return {"exports": job.cascade.stages, "scenario": job.scenario.name, "precision": job.cascade.precision,
            "stages": {name: {"frames": s.frames, "context_noise_level": s.context_noise_level}
                       for name, s in stages.items() if s is not None},
            "prediction_window": engine.prediction_window or engine.prediction.frames}


def _seconds(override: float | None, own: float | None) -> float:
    seconds = float(override if override is not None else own or DEFAULT_SECONDS)
    if not math.isfinite(seconds) or seconds <= 0:
        raise GenerateError(f"seconds={seconds}: must be > 0")
    return seconds


def _scene_inputs(scenario: Scenario, cascade: LoadedCascade) -> SceneInputs:
    text = null = None
    supports = Supports.of(cascade.engine.prediction.unet)
    unused = [name for name, given, used in (("labels", bool(scenario.labels), supports.labels),
                                             ("agents", bool(scenario.agents), supports.boxes),
                                             ("text", bool(scenario.text), cascade.has_text))
              if given and not used]
    if unused:
        log.warning("%s: the checkpoint has no encoder for %s: they are recorded but not conditioned on",
                    scenario.source, ", ".join(unused))
    encoder = cascade.text_encoder if scenario.text and cascade.has_text else None
    if encoder is not None:
        import torch

        with torch.no_grad():
            text = encoder([scenario.text])[0]
            null = encoder.null_embedding(1)[0]
    return SceneInputs(labels=scenario.label_indices() if scenario.labels else None, text=text, null_text=null)
