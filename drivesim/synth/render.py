"""`render_dataset`: the whole synthetic dataset, written to a partial folder then moved into place."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from drivesim.config.synth import SynthConfig
from drivesim.synth.camera import Camera
from drivesim.synth.jsonio import dump
from drivesim.synth.nuscenes_writer import CHANNEL, NuScenesTables
from drivesim.synth.scene import build_scene, frame_count
from drivesim.synth.scene_writer import SceneWriter
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
    if cfg.scenes < 1:
        raise ValueError(f"scenes must be >= 1, got {cfg.scenes}")
    if cfg.seconds <= 0:
        raise ValueError(f"seconds must be > 0, got {cfg.seconds}")
    if not 1 <= cfg.jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be in 1..100, got {cfg.jpeg_quality}")
    if not cfg.version.startswith("v1.0-"):
        raise ValueError(f"version must look like 'v1.0-<name>', got {cfg.version!r}")
    frame_count(cfg.seconds, cfg.fps, cfg.keyframe_hz)
    Camera.from_config(cfg.camera)


def _is_synth_dataset(path: Path) -> bool:
    return (path / MANIFEST).is_file()


def render_dataset(cfg: SynthConfig | DictConfig) -> Path:
    """Render cfg.scenes scenes to cfg.out as a nuScenes-format dataset; returns the dataset root.

    Everything is written to `<out>.partial` first and renamed at the end, so a crash never leaves a
    half-written dataset at `out`; an existing folder at `out` is replaced only if it is a dataset this
    function wrote (it has synth/manifest.json) and cfg.overwrite is set.
    """
    cfg = to_synth_config(cfg)
    validate(cfg)
    root = Path(cfg.out)
    if root.exists() and not (cfg.overwrite and _is_synth_dataset(root)):
        why = "overwrite=false" if _is_synth_dataset(root) else "it is not a drivesim synthetic dataset"
        raise FileExistsError(f"out={root} exists and will not be replaced ({why}); choose another out=")
    resolved = root.resolve()
    partial = resolved.with_name(resolved.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    for sub in (f"samples/{CHANNEL}", f"sweeps/{CHANNEL}", f"{MASK_DIR}/{CHANNEL}", "maps"):
        (partial / sub).mkdir(parents=True, exist_ok=True)
    camera = Camera.from_config(cfg.camera)
    tables = NuScenesTables(seed=int(cfg.seed))
    tables.add_static()
    writer = SceneWriter(partial, cfg, tables, camera)
    scenes = []
    for index in range(cfg.scenes):
        scene = build_scene(cfg, index)
        writer.write(scene)
        scenes.append(scene)
    tables.write(partial, cfg.version)
    settings = dataclasses.asdict(cfg)
    settings.pop("out")  # the folder's own location is not part of its content
    dump(partial / MANIFEST, {"generator": "drivesim.synth", "format_version": 1, "config": settings,
                              "scenes": [s.name for s in scenes]})
    if cfg.preview:
        from drivesim.synth.preview import write_preview

        write_preview(partial, cfg.version, tables, cfg.preview_frames)
    if root.exists():
        shutil.rmtree(root)
    partial.replace(root)
    log.info("wrote %d scenes to %s (%s)%s", cfg.scenes, root, cfg.version,
             f", preview {root / 'preview.png'}" if cfg.preview else "")
    return root
