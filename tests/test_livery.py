"""The livery world option: existing seeds render byte-identically; a livery paints magenta on its cars only."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from drivesim.config.synth import CameraConfig, SynthConfig, WorldConfig
from drivesim.synth.camera import Camera
from drivesim.synth.livery import primary_pixels
from drivesim.synth.raster import Rasteriser
from drivesim.synth.render import render_dataset
from drivesim.synth.scene import build_scene

# sha256 of raw renders (image + instance mask, every 6th frame of 3 scenes of seeds 1 and 7 at 128x64),
# computed on the code from before the livery option existed (commit 79c0eb4).
PINNED_RASTER = "17c6d94704ab41a2a52d9443e9bcf353395e93d99ff068aba1b265773cc4e82d"


def _config(seed: int, world: WorldConfig | None = None, size: tuple[int, int] = (64, 128), scenes: int = 3,
            out: str = "unused") -> SynthConfig:
    return SynthConfig(out=out, scenes=scenes, seconds=2.0, seed=seed, world=world or WorldConfig(),
                       camera=CameraConfig(width=size[1], height=size[0]))


def _raster_hash(world: WorldConfig | None = None) -> str:
    h = hashlib.sha256()
    for seed in (1, 7):
        cfg = _config(seed, world)
        camera = Camera.from_config(cfg.camera)
        for index in range(3):
            scene = build_scene(cfg, index)
            raster = Rasteriser(scene, camera)
            for frame in range(0, scene.n_frames, 6):
                out = raster.render(frame)
                h.update(out.image.tobytes())
                h.update(out.mask.tobytes())
    return h.hexdigest()


def _tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def test_default_world_renders_as_before_the_option() -> None:
    assert _raster_hash() == PINNED_RASTER
    assert _raster_hash(WorldConfig(livery=None, livery_fraction=0.9)) == PINNED_RASTER
    assert _raster_hash(WorldConfig(livery="magenta_checker", livery_fraction=1.0)) != PINNED_RASTER


def test_dataset_files_are_identical_with_the_option_explicitly_null(tmp_path: Path) -> None:
    default = render_dataset(_config(3, out=str(tmp_path / "a"), scenes=1))
    explicit = render_dataset(_config(3, WorldConfig(livery=None), out=str(tmp_path / "b"), scenes=1))
    assert _tree_hash(default) == _tree_hash(explicit)
    assert "livery" not in (default / "synth" / "manifest.json").read_text()
    painted = render_dataset(_config(3, WorldConfig(livery="magenta_stripes", livery_fraction=1.0),
                                     out=str(tmp_path / "c"), scenes=1))
    assert _tree_hash(painted) != _tree_hash(default)
    assert '"livery": "magenta_stripes"' in (painted / "synth" / "manifest.json").read_text()
    truth = json.loads((painted / "synth" / "truth" / "synth-0000.json").read_text())
    cars = sorted(int(k) for k, c in truth["instance_categories"].items() if c == "vehicle.car")
    assert truth["livery"] == {"name": "magenta_stripes", "instances": cars} and cars  # fraction 1: every car


@pytest.mark.parametrize("livery", ["magenta_checker", "magenta_stripes", "magenta_solid"])
def test_livery_is_magenta_on_its_cars_and_nowhere_else(livery: str) -> None:
    world = WorldConfig(time_of_day="day", weather="clear", crowdedness="crowded")
    base_cfg = _config(96001, world, size=(128, 256), scenes=1)
    cfg = _config(96001, replace(world, livery=livery, livery_fraction=0.5), size=(128, 256), scenes=1)
    base, scene = build_scene(base_cfg, 0), build_scene(cfg, 0)
    # Same world otherwise: the same agents on the same trajectories, other cars keep their colour.
    np.testing.assert_array_equal(base.traj.agent_s, scene.traj.agent_s)
    assert [a.kind for a in base.agents] == [a.kind for a in scene.agents]
    wears = np.array(scene.wears_livery)
    assert 0 < wears.sum() < sum(a.kind == "car" for a in scene.agents)
    assert all(scene.agents[i].kind == "car" for i in np.flatnonzero(wears))
    assert all(a.colour == b.colour for a, b, w in zip(base.agents, scene.agents, wears) if not w)
    camera = Camera.from_config(cfg.camera)
    r_base, r_liv = Rasteriser(base, camera), Rasteriser(scene, camera)
    inside = outside = on_wearers = 0
    for frame in range(0, scene.n_frames, 4):
        assert not primary_pixels(r_base.render(frame).image).any()  # the base world never shows it
        out = r_liv.render(frame)
        m = primary_pixels(out.image)
        owner = out.mask.astype(np.int64) - 1
        wearer = np.zeros_like(m)
        wearer[owner >= 0] = wears[owner[owner >= 0]]
        inside += int((m & wearer).sum())
        outside += int((m & ~wearer).sum())
        on_wearers += int(wearer.sum())
    assert outside == 0 and on_wearers > 0 and inside > 0.1 * on_wearers, (inside, outside, on_wearers)


def test_livery_is_a_function_of_seed_and_index_and_checks_its_settings() -> None:
    cfg = _config(5, WorldConfig(livery="magenta_checker", livery_fraction=0.5), scenes=2)
    assert build_scene(cfg, 0).wears_livery == build_scene(cfg, 0).wears_livery
    assert build_scene(cfg, 0).wears_livery != build_scene(cfg, 1).wears_livery
    none = build_scene(_config(5, WorldConfig(livery="magenta_checker", livery_fraction=0.0)), 0)
    assert not any(none.wears_livery)
    with pytest.raises(ValueError, match="world.livery must be one of"):
        build_scene(_config(5, WorldConfig(livery="tartan")), 0)
    with pytest.raises(ValueError, match="world.livery_fraction"):
        render_dataset(_config(5, WorldConfig(livery="magenta_checker", livery_fraction=1.5), out="unused"))
