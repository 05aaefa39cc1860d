"""The synthetic world as a nuScenes dataset: loaded by the unmodified devkit, checked through its API."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from nuscenes.nuscenes import NuScenes
from nuscenes.utils.geometry_utils import BoxVisibility, view_points
from pyquaternion import Quaternion

from drivesim.config.synth import CameraConfig, SynthConfig, WorldConfig
from drivesim.synth import render_dataset
from drivesim.synth.truth import load_scene_truth

VERSION = "v1.0-synth"
SECONDS = 4.0


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, NuScenes]:
    cfg = SynthConfig(out=str(tmp_path_factory.mktemp("synth") / "data"), scenes=2, seconds=SECONDS, seed=5,
                      world=WorldConfig(crowdedness="crowded"))
    root = render_dataset(cfg)
    return root, NuScenes(version=VERSION, dataroot=str(root), verbose=False)


def _chain(nusc: NuScenes, table: str, first: str) -> list[dict]:
    out, token = [], first
    while token:
        rec = nusc.get(table, token)
        out.append(rec)
        token = rec["next"]
    return out


def test_tables_and_links(dataset: tuple[Path, NuScenes]) -> None:
    root, nusc = dataset
    assert len(nusc.scene) == 2 and len(nusc.sensor) == 1 and nusc.sensor[0]["channel"] == "CAM_FRONT"
    for scene in nusc.scene:
        samples = _chain(nusc, "sample", scene["first_sample_token"])
        assert len(samples) == scene["nbr_samples"] == int(SECONDS * 2) + 1
        assert samples[-1]["token"] == scene["last_sample_token"] and samples[0]["prev"] == ""
        assert all(s["scene_token"] == scene["token"] for s in samples)
        assert np.all(np.diff([s["timestamp"] for s in samples]) == 500_000)  # key frames at 2 Hz
        first_sd = nusc.get("sample_data", samples[0]["data"]["CAM_FRONT"])
        sds = _chain(nusc, "sample_data", first_sd["token"])
        assert len(sds) == int(SECONDS * 12) + 1 and first_sd["prev"] == ""
        assert np.all(np.abs(np.diff([sd["timestamp"] for sd in sds]) - 1e6 / 12) <= 1)  # 12 Hz
        keys = [i for i, sd in enumerate(sds) if sd["is_key_frame"]]
        assert keys == list(range(0, len(sds), 6))
        by_token = {s["token"]: s for s in samples}
        for i, sd in enumerate(sds):
            sample = by_token[sd["sample_token"]]
            if sd["is_key_frame"]:
                assert sample["data"]["CAM_FRONT"] == sd["token"] and sample["timestamp"] == sd["timestamp"]
                assert sd["filename"].startswith("samples/CAM_FRONT/")
            else:  # a sweep belongs to the next key frame, as in real nuScenes
                assert sds[-(-i // 6) * 6]["sample_token"] == sd["sample_token"]
                assert sd["filename"].startswith("sweeps/CAM_FRONT/")
            assert (root / sd["filename"]).is_file()
            assert nusc.get("ego_pose", sd["ego_pose_token"])["timestamp"] == sd["timestamp"]
    for inst in nusc.instance:
        anns = _chain(nusc, "sample_annotation", inst["first_annotation_token"])
        assert len(anns) == inst["nbr_annotations"] and anns[-1]["token"] == inst["last_annotation_token"]
        assert all(a["instance_token"] == inst["token"] for a in anns)
    names = {c["name"] for c in nusc.category}
    assert {"vehicle.car", "vehicle.truck", "vehicle.bus.rigid", "vehicle.bicycle", "human.pedestrian.adult"} <= names
    seen = {a["category_name"] for a in nusc.sample_annotation}
    assert {"vehicle.car", "human.pedestrian.adult"} <= seen
    for ann in nusc.sample_annotation:
        attrs = {nusc.get("attribute", t)["name"] for t in ann["attribute_tokens"]}
        if ann["category_name"] == "vehicle.bicycle":
            assert attrs == {"cycle.with_rider"}
        if ann["category_name"].startswith("vehicle.") and ann["category_name"] != "vehicle.bicycle":
            assert ann["size"][1] > ann["size"][0]  # [width, length, height]
        assert ann["visibility_token"] in {"1", "2", "3", "4"}
    for rec in nusc.map:
        assert (root / rec["filename"]).is_file()
    # the devkit reads map PNGs as 0.1 m/pixel: the ego and every vehicle must be on the drivable area
    for scene in nusc.scene:
        mask = nusc.get("map", nusc.get("log", scene["log_token"])["map_token"])["mask"]
        sds = _chain(nusc, "sample_data", nusc.get("sample", scene["first_sample_token"])["data"]["CAM_FRONT"])
        ego = np.array([nusc.get("ego_pose", sd["ego_pose_token"])["translation"][:2] for sd in sds])
        assert mask.is_on_mask(ego[:, 0], ego[:, 1]).all()
        cars = np.array([a["translation"][:2] for a in nusc.sample_annotation if a["category_name"] == "vehicle.car"
                         and nusc.get("sample", a["sample_token"])["scene_token"] == scene["token"]])
        assert mask.is_on_mask(cars[:, 0], cars[:, 1]).all()
        assert mask.mask().mean() < 0.8 * 255  # and not everything is road


def test_devkit_velocity_and_sweep_interpolation(dataset: tuple[Path, NuScenes]) -> None:
    _, nusc = dataset
    moving = [a for a in nusc.sample_annotation
              if "vehicle.moving" in {nusc.get("attribute", t)["name"] for t in a["attribute_tokens"]}
              and a["prev"] and a["next"]]
    assert moving
    speeds = [np.linalg.norm(nusc.box_velocity(a["token"])[:2]) for a in moving]
    assert np.all(np.isfinite(speeds)) and 1.0 < np.median(speeds) < 25.0
    sweep = next(sd for sd in nusc.sample_data if not sd["is_key_frame"] and nusc.get("sample", sd["sample_token"])["prev"])
    assert len(nusc.get_boxes(sweep["token"])) == len(nusc.get("sample", sweep["sample_token"])["anns"])


def test_descriptions_carry_labels(tmp_path: Path) -> None:
    cfg = SynthConfig(out=str(tmp_path / "d"), scenes=1, seconds=1.0, seed=1,
                      camera=CameraConfig(width=128, height=64),
                      world=WorldConfig(time_of_day="night", weather="rain", crowdedness="crowded"))
    nusc = NuScenes(version=VERSION, dataroot=str(render_dataset(cfg)), verbose=False)
    assert nusc.scene[0]["description"] == "night, rain, crowded"


def test_scene_labels_match_descriptions(dataset: tuple[Path, NuScenes]) -> None:
    root, nusc = dataset
    for scene in nusc.scene:
        truth = load_scene_truth(root, scene["name"])
        words = scene["description"].split(", ")
        assert words[0] == truth.labels["time_of_day"] and words[1] == truth.labels["weather"]
        assert truth.labels["crowdedness"] == "crowded" and words[2] == "crowded"


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area


def _box_pixel_ious(root: Path, nusc: NuScenes) -> list[tuple[float, str]]:
    """IoU of devkit-projected 3D boxes and instance-mask pixel boxes, for unoccluded objects >= 24 px."""
    checked = []
    for scene in nusc.scene:
        truth = load_scene_truth(root, scene["name"])
        index_of = {tok: idx for idx, tok in truth.instance_tokens.items()}
        frame_of = {tok: k for k, tok in enumerate(truth.sample_data_tokens)}
        for sample in _chain(nusc, "sample", scene["first_sample_token"]):
            sd_token = sample["data"]["CAM_FRONT"]
            mask = truth.load_mask(frame_of[sd_token])
            _, boxes, intrinsic = nusc.get_sample_data(sd_token, box_vis_level=BoxVisibility.ANY)
            projected = []
            for box in boxes:
                corners = box.corners()
                uv = view_points(corners, intrinsic, normalize=True)[:2]
                projected.append((box, np.array([uv[0].min(), uv[1].min(), uv[0].max(), uv[1].max()]),
                                  corners[2].min()))
            w, h = mask.shape[1], mask.shape[0]
            for box, rect, depth in projected:
                ann = nusc.get("sample_annotation", box.token)
                inside = rect[0] >= 0 and rect[1] >= 0 and rect[2] <= w and rect[3] <= h and depth > 0
                occluders = [r for b, r, d in projected if b is not box and d < depth and _iou(r, rect) > 0]
                if not inside or occluders or ann["visibility_token"] != "4":
                    continue
                ys, xs = np.nonzero(mask == index_of[ann["instance_token"]])
                if len(xs) == 0:
                    continue
                # pixel i covers [i - 0.5, i + 0.5] in the devkit's (OpenCV) pixel coordinates
                pixels = np.array([xs.min() - 0.5, ys.min() - 0.5, xs.max() + 0.5, ys.max() + 0.5])
                if pixels[2] - pixels[0] < 24 or pixels[3] - pixels[1] < 24:
                    continue
                checked.append((_iou(pixels, rect), ann["category_name"]))
    return checked


def test_projected_boxes_match_rendered_pixels(dataset: tuple[Path, NuScenes]) -> None:
    """Devkit boxes (get_sample_data + view_points) against the instance-mask pixels of the image."""
    checked = _box_pixel_ious(*dataset)
    assert len(checked) >= 10, f"too few unoccluded objects to test: {len(checked)}"
    worst = min(checked)
    assert worst[0] >= 0.9, f"IoU {worst[0]:.3f} for a {worst[1]}"
    assert len({c for _, c in checked}) >= 2


def test_box_projection_at_450x800_night(tmp_path: Path) -> None:
    """A larger, non-default resolution (and night lighting) keeps the boxes on the pixels."""
    cfg = SynthConfig(out=str(tmp_path / "big"), scenes=1, seconds=2.0, seed=3,
                      camera=CameraConfig(width=800, height=450),
                      world=WorldConfig(time_of_day="night", weather="rain", crowdedness="crowded"))
    root = render_dataset(cfg)
    nusc = NuScenes(version=VERSION, dataroot=str(root), verbose=False)
    assert {sd["width"] for sd in nusc.sample_data} == {800} and {sd["height"] for sd in nusc.sample_data} == {450}
    checked = _box_pixel_ious(root, nusc)
    assert len(checked) >= 3, f"too few unoccluded objects to test: {len(checked)}"
    assert min(checked)[0] >= 0.9, f"IoU {min(checked)[0]:.3f} for a {min(checked)[1]}"


def test_truth_sidecar_agrees_with_tables(dataset: tuple[Path, NuScenes]) -> None:
    root, nusc = dataset
    for scene in nusc.scene:
        truth = load_scene_truth(root, scene["name"])
        first = nusc.get("sample", scene["first_sample_token"])["data"]["CAM_FRONT"]
        sds = _chain(nusc, "sample_data", first)
        assert truth.sample_data_tokens == [sd["token"] for sd in sds]
        assert truth.timestamps.tolist() == [sd["timestamp"] for sd in sds]
        # ego speed and yaw rate against the devkit's ego poses (central differences)
        poses = [nusc.get("ego_pose", sd["ego_pose_token"]) for sd in sds]
        xy = np.array([p["translation"][:2] for p in poses])
        t = truth.timestamps * 1e-6
        speed = np.linalg.norm(xy[2:] - xy[:-2], axis=1) / (t[2:] - t[:-2])
        assert np.allclose(speed, truth.ego_speed[1:-1], rtol=0.03, atol=0.05)
        yaw = np.unwrap([Quaternion(p["rotation"]).yaw_pitch_roll[0] for p in poses])
        yaw_rate = (yaw[2:] - yaw[:-2]) / (t[2:] - t[:-2])
        assert np.allclose(yaw_rate, truth.ego_yaw_rate[1:-1], atol=0.01)
        # the ego drives on a lane: some lane centre passes within half a lane of it
        at_ego = truth.lane_centres[:, :, 2, :]  # station 0 m (stations start at -10 m, every 5 m)
        nearest = at_ego[np.arange(len(at_ego)), np.abs(at_ego[..., 1]).argmin(axis=1)]
        assert np.all(np.abs(nearest[:, 1]) < 1.8) and np.all(np.abs(nearest[:, 0]) < 0.5)
        assert truth.road_edges.shape[1] == 2
        assert np.all(truth.road_edges[:, 0, 2, 1] < 0) and np.all(truth.road_edges[:, 1, 2, 1] > 0)
        # the mask's instance index -> its key-frame sample_annotation (and the very same box)
        for k in np.flatnonzero(truth.is_key_frame):
            for ob in truth.objects[k]:
                assert ob.annotation_token is not None
                ann = nusc.get("sample_annotation", ob.annotation_token)
                assert ann["instance_token"] == truth.instance_tokens[ob.index] == ob.instance_token
                assert ann["sample_token"] == nusc.get("sample_data", truth.sample_data_tokens[k])["sample_token"]
                assert np.allclose(ann["translation"], ob.translation, atol=1e-5)
        assert all(ob.annotation_token is None for k in np.flatnonzero(~truth.is_key_frame) for ob in truth.objects[k])
        mask = truth.load_mask(0)
        assert mask.dtype == np.uint16 and mask.shape == (256, 512)
        assert set(np.unique(mask).tolist()) - {0} <= set(truth.instance_tokens)


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    def cfg(out: str, seed: int) -> SynthConfig:
        return SynthConfig(out=str(tmp_path / out), scenes=1, seconds=1.0, seed=seed, preview=True,
                           camera=CameraConfig(width=256, height=128))

    a, b, c = (_digest(render_dataset(cfg(name, seed))) for name, seed in (("a", 3), ("b", 3), ("c", 4)))
    assert len(a) > 20 and a == b
    assert len(a) == len(c) and a != c


def test_refuses_to_replace_other_folders(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a drivesim synthetic dataset"):
        render_dataset(SynthConfig(out=str(tmp_path / "mine"), scenes=1, seconds=1.0))
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    # a folder that merely looks like a leftover of ours is never deleted either
    (tmp_path / "data.partial").mkdir()
    (tmp_path / "data.partial" / "notes.txt").write_text("keep me too")
    small = CameraConfig(width=64, height=32)
    render_dataset(SynthConfig(out=str(tmp_path / "data"), scenes=1, seconds=0.5, camera=small))
    assert (tmp_path / "data.partial" / "notes.txt").read_text() == "keep me too"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "data.partial", "mine"]


def test_failed_render_keeps_the_good_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from drivesim.synth.scene_writer import SceneWriter

    cfg = SynthConfig(out=str(tmp_path / "data"), scenes=2, seconds=0.5, seed=1,
                      camera=CameraConfig(width=64, height=32))
    before = _digest(render_dataset(cfg))
    real_write = SceneWriter.write

    def write_then_fail(self: SceneWriter, scene: object) -> None:
        real_write(self, scene)  # type: ignore[arg-type]
        raise RuntimeError("disk full")

    monkeypatch.setattr(SceneWriter, "write", write_then_fail)
    cfg.seed = 2
    with pytest.raises(RuntimeError, match="disk full"):
        render_dataset(cfg)
    assert _digest(tmp_path / "data") == before  # untouched, not half-replaced
    assert [p.name for p in tmp_path.iterdir()] == ["data"]  # and no half-written leftovers beside it


def test_bad_settings_fail_before_writing(tmp_path: Path) -> None:
    bad = [({"keyframe_hz": 0.0}, "keyframe_hz"), ({"fps": 12.0, "keyframe_hz": 5.0}, "keyframe_hz"),
           ({"preview_frames": 0}, "preview_frames"), ({"world": WorldConfig(weather="snow")}, "world.weather"),
           ({"world": WorldConfig(forward_lanes=4)}, "world.forward_lanes"),
           ({"world": WorldConfig(stop_probability=2.0)}, "world.stop_probability")]
    for change, field_name in bad:
        cfg = SynthConfig(out=str(tmp_path / "out"), scenes=1, seconds=1.0)
        for key, value in change.items():
            setattr(cfg, key, value)
        with pytest.raises(ValueError, match=field_name):
            render_dataset(cfg)
    assert list(tmp_path.iterdir()) == []


def test_long_scenes_do_not_overlap_in_time() -> None:
    from drivesim.synth.scene_writer import scene_start_us

    for seconds in (4.0, 900.0, 3600.0):
        n = int(seconds * 12) + 1
        end_of_first = scene_start_us(0, n, 12.0) + round((n - 1) * 1e6 / 12.0)
        assert scene_start_us(1, n, 12.0) > end_of_first


def test_preview_draws_boxes_in_category_colours(dataset: tuple[Path, NuScenes], tmp_path: Path) -> None:
    """Box.render_cv2 takes RGB colours: a car's box must come out orange (255, 158, 0), not blue."""
    import cv2

    from drivesim.synth.nuscenes_writer import NuScenesTables
    from drivesim.synth.preview import write_preview

    root, nusc = dataset
    tables = NuScenesTables(seed=0)
    for name in tables.tables:
        tables.tables[name] = list(getattr(nusc, name))
    out = tmp_path / "p"
    out.mkdir()
    (out / "samples").symlink_to(root / "samples")
    grid = cv2.imread(str(write_preview(out, VERSION, tables, 4)))
    orange_bgr = np.all(grid == (0, 158, 255), axis=-1).sum()
    swapped = np.all(grid == (255, 158, 0), axis=-1).sum()
    assert orange_bgr > 20 and swapped == 0


def test_cli_synth_and_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from drivesim.cli import main

    out = tmp_path / "cli"
    assert main(["synth", f"out={out}", "scenes=1", "seconds=1", "seed=2", "camera.width=128",
                 "camera.height=64", "preview=true"]) == 0
    assert (out / "preview.png").is_file() and (out / VERSION / "scene.json").is_file()
    assert main(["synth", f"out={tmp_path / 'bad'}", "scenes=0"]) == 2
    assert main(["synth", f"out={tmp_path / 'bad'}", "world.weather=snow"]) == 2
