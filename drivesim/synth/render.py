"""`render_dataset`: the whole synthetic dataset, written to a partial folder then moved into place."""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from drivesim.config.synth import SynthConfig
from drivesim.progress import progress
from drivesim.synth.camera import Camera
from drivesim.synth.jsonio import dump
from drivesim.synth.livery import get_livery
from drivesim.synth.nuscenes_writer import CHANNEL, NuScenesTables
from drivesim.synth.scene import build_scene, frame_count
from drivesim.synth.scene_writer import SceneWriter
from drivesim.synth.style import CROWDEDNESS, TIMES_OF_DAY, WEATHERS
from drivesim.synth.truth import MASK_DIR

log = logging.getLogger(__name__)

MANIFEST = "synth/manifest.json"


def to_synth_config(cfg: SynthConfig | DictConfig) -> SynthConfig:
    """A typed SynthConfig from a Hydra node (or a SynthConfig itself)."""
    if isinstance(cfg, SynthConfig):
        return cfg
    merged = OmegaConf.merge(OmegaConf.structured(SynthConfig), cfg)
    obj = OmegaConf.to_object(merged)
    assert isinstance(obj, SynthConfig)
    return obj


def validate(cfg: SynthConfig) -> None:
    """Reject bad settings before anything is written, naming the field."""
    if cfg.scenes < 1:
        raise ValueError(f"scenes must be >= 1, got {cfg.scenes}")
    if cfg.seconds <= 0:
        raise ValueError(f"seconds must be > 0, got {cfg.seconds}")
    if cfg.fps <= 0 or cfg.keyframe_hz <= 0:
        raise ValueError(f"fps and keyframe_hz must be > 0, got fps={cfg.fps}, keyframe_hz={cfg.keyframe_hz}")
    if not 1 <= cfg.jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be in 1..100, got {cfg.jpeg_quality}")
    if cfg.preview_frames < 1:
        raise ValueError(f"preview_frames must be >= 1, got {cfg.preview_frames}")
    if not cfg.version.startswith("v1.0-"):
        raise ValueError(f"version must look like 'v1.0-<name>', got {cfg.version!r}")
    world = cfg.world
    for name, value, options in (("time_of_day", world.time_of_day, TIMES_OF_DAY),
                                 ("weather", world.weather, WEATHERS),
                                 ("crowdedness", world.crowdedness, CROWDEDNESS)):
        if value is not None and value not in options:
            raise ValueError(f"world.{name} must be one of {options}, got {value!r}")
    for name, lanes in (("forward_lanes", world.forward_lanes), ("backward_lanes", world.backward_lanes)):
        if lanes is not None and lanes not in (1, 2, 3):
            raise ValueError(f"world.{name} must be 1, 2 or 3 (or null), got {lanes}")
    for name, density in (("traffic_density", world.traffic_density), ("props_density", world.props_density)):
        if density < 0:
            raise ValueError(f"world.{name} must be >= 0, got {density}")
    if not 0.0 <= world.stop_probability <= 1.0:
        raise ValueError(f"world.stop_probability must be in [0, 1], got {world.stop_probability}")
    if world.livery is not None:
        get_livery(world.livery)
    if not 0.0 <= world.livery_fraction <= 1.0:
        raise ValueError(f"world.livery_fraction must be in [0, 1], got {world.livery_fraction}")
    frame_count(cfg.seconds, cfg.fps, cfg.keyframe_hz)
    Camera.from_config(cfg.camera)


def _is_synth_dataset(path: Path) -> bool:
    return (path / MANIFEST).is_file()


def render_dataset(cfg: SynthConfig | DictConfig) -> Path:
    """Render cfg.scenes scenes to cfg.out as a nuScenes-format dataset; returns the dataset root.

    Everything is written to a fresh hidden folder beside `out` and renamed at the end, so a failure
    never leaves a half-written dataset at `out` nor touches a good one there; an existing folder at
    `out` is replaced only if it is a dataset this function wrote (it has synth/manifest.json) and
    cfg.overwrite is set, and only once the new one is complete.
    """
    cfg = to_synth_config(cfg)
    validate(cfg)
    root = Path(cfg.out)
    n_frames, _ = frame_count(cfg.seconds, cfg.fps, cfg.keyframe_hz)
    if abs((n_frames - 1) / cfg.fps - cfg.seconds) > 1e-6:
        log.info("seconds=%g rounded to %g: a scene starts and ends on a key frame (every %g s)",
                 cfg.seconds, (n_frames - 1) / cfg.fps, 1.0 / cfg.keyframe_hz)
    if root.exists() and not (cfg.overwrite and _is_synth_dataset(root)):
        why = "overwrite=false" if _is_synth_dataset(root) else "it is not a drivesim synthetic dataset"
        raise FileExistsError(f"out={root} exists and will not be replaced ({why}); choose another out=")
    target = root.resolve()  # "out=." or "out=x/.." still name a folder with a parent and a name
    target.parent.mkdir(parents=True, exist_ok=True)
    # a fresh hidden folder beside `out`: never an existing folder, so nothing of the user's is touched
    partial = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        _render_into(partial, cfg)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if target.exists():  # swap: the old dataset goes only once the new one is complete
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        target.rename(old / "data")
        partial.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        partial.rename(target)
    log.info("wrote %d scenes to %s (%s)%s", cfg.scenes, root, cfg.version,
             f", preview {root / 'preview.png'}" if cfg.preview else "")
    return root


def render_unless_current(cfg: SynthConfig) -> bool:
    """Render `cfg` unless `cfg.out` already holds this very render (its stamp, `synth/render.json`, holds the
    settings without `out`, so a moved or re-rendered folder reads the same); True when it rendered. For the
    renders drivesim keeps and re-uses: the demo's held-out scene, the benchmark's held-out seeds."""
    import json

    from drivesim.atomic import atomic_write_text

    settings = dataclasses.asdict(cfg)
    settings.pop("out")
    stamp = Path(cfg.out) / "synth" / "render.json"
    wanted = json.dumps(settings, sort_keys=True)
    if stamp.is_file() and stamp.read_text() == wanted:
        return False
    render_dataset(cfg)
    atomic_write_text(stamp, wanted)
    return True


def _render_into(partial: Path, cfg: SynthConfig) -> None:
    umask = os.umask(0)
    os.umask(umask)
    partial.chmod(0o777 & ~umask)  # mkdtemp makes it private; a dataset is an ordinary folder
    for sub in (f"samples/{CHANNEL}", f"sweeps/{CHANNEL}", f"{MASK_DIR}/{CHANNEL}", "maps"):
        (partial / sub).mkdir(parents=True, exist_ok=True)
    camera = Camera.from_config(cfg.camera)
    tables = NuScenesTables(seed=int(cfg.seed))
    tables.add_static()
    writer = SceneWriter(partial, cfg, tables, camera)
    names = []
    for index in progress(range(cfg.scenes), "rendering scenes"):
        scene = build_scene(cfg, index)
        writer.write(scene)
        names.append(scene.name)
    tables.write(partial, cfg.version)
    settings = dataclasses.asdict(cfg)
    settings.pop("out")  # the folder's own location is not part of its content
    if cfg.world.livery is None:  # without a livery the manifest reads as it did before the option existed
        for key in ("livery", "livery_fraction"):
            settings["world"].pop(key)
    dump(partial / MANIFEST, {"generator": "drivesim.synth", "format_version": 1, "config": settings,
                              "scenes": names})
    if cfg.preview:
        from drivesim.synth.preview import write_preview

        write_preview(partial, cfg.version, tables, cfg.preview_frames)
