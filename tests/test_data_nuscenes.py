"""The nuScenes loader on a nuScenes-format dataset written by the test: boxes against an
independent projection, sweep interpolation, ego motion against the analytic path, labels,
splits, gaps, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from data_fixtures import CAM_ROTATION, HEIGHT, SPEED, WIDTH, YAW_RATE, K, write_nuscenes
from pyquaternion import Quaternion

from drivesim.data import DataError, NuScenesClips
from drivesim.data.nuscenes import project_box_2d

VERSION = "v1.0-fixture"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_nuscenes(tmp_path_factory.mktemp("nus"), VERSION)


def _tables(root: Path, version: str = VERSION) -> dict[str, dict[str, dict]]:
    out = {}
    for name in ("sample_data", "sample", "sample_annotation", "ego_pose"):
        out[name] = {r["token"]: r for r in json.loads((root / version / f"{name}.json").read_text())}
    return out


def _expected_boxes(tables: dict, sd_token: str) -> dict[str, np.ndarray]:
    """instance token -> (8, 3) camera-frame corners, computed here with plain numpy: key frames
    use their annotation, sweeps interpolate between the previous and next key frame linearly."""
    sd = tables["sample_data"][sd_token]
    nxt = tables["sample"][sd["sample_token"]]
    anns = [tables["sample_annotation"][a] for a in tables["sample_annotation"] if tables["sample_annotation"][a]["sample_token"] == nxt["token"]]
    pose = tables["ego_pose"][sd["ego_pose_token"]]
    out = {}
    for ann in anns:
        center = np.array(ann["translation"])
        if not sd["is_key_frame"] and ann["prev"]:
            prev = tables["sample_annotation"][ann["prev"]]
            t0 = tables["sample"][prev["sample_token"]]["timestamp"]
            a = (sd["timestamp"] - t0) / (nxt["timestamp"] - t0)
            center = (1 - a) * np.array(prev["translation"]) + a * center
            rot = Quaternion.slerp(Quaternion(prev["rotation"]), Quaternion(ann["rotation"]), a)
        else:
            rot = Quaternion(ann["rotation"])
        w, length, h = ann["size"]
        x = length / 2 * np.array([1, 1, 1, 1, -1, -1, -1, -1])
        y = w / 2 * np.array([1, -1, -1, 1, 1, -1, -1, 1])
        z = h / 2 * np.array([1, 1, -1, -1, 1, 1, -1, -1])
        world = rot.rotation_matrix @ np.stack([x, y, z]) + center[:, None]
        ego = Quaternion(pose["rotation"]).rotation_matrix.T @ (world - np.array(pose["translation"])[:, None])
        cam = CAM_ROTATION.rotation_matrix.T @ (ego - np.array([1.5, 0.0, 1.5])[:, None])
        out[ann["instance_token"]] = cam.T
    return out


@pytest.mark.parametrize("size", [(45, 80), (37, 71), (90, 160), (128, 256)])
def test_boxes_match_an_independent_projection(root: Path, size: tuple[int, int]) -> None:
    ds = NuScenesClips(root, VERSION, frames=4, fps=4.0, size=size, stride=0.5)
    tables = _tables(root)
    instances = [r["token"] for r in json.loads((root / VERSION / "instance.json").read_text())]
    h, w = size
    scale = max(h / HEIGHT, w / WIDTH)
    rh, rw = max(h, round(HEIGHT * scale)), max(w, round(WIDTH * scale))
    sx, sy, x0, y0 = rw / WIDTH, rh / HEIGHT, (rw - w) // 2, (rh - h) // 2
    sweeps = 0
    for i in range(len(ds)):
        clip = ds[i]
        assert clip.frames.shape == (4, 3, h, w)
        for t, token in enumerate(clip.source.frame_ids):
            sweeps += not tables["sample_data"][token]["is_key_frame"]
            expected = _expected_boxes(tables, token)
            assert len(clip.boxes_2d[t]) == len(expected) == 2
            for j, inst in enumerate(clip.instance_ids[t]):
                corners = expected[instances[inst]]
                np.testing.assert_allclose(clip.boxes_3d[t][j], corners, atol=1e-4)
                uv = (np.array(K) @ corners.T)
                uv = (uv[:2] / uv[2]).T
                box = np.array([uv[:, 0].min(), uv[:, 1].min(), uv[:, 0].max(), uv[:, 1].max()])
                box = np.clip(box, 0, [WIDTH, HEIGHT, WIDTH, HEIGHT]) * [sx, sy, sx, sy] - [x0, y0, x0, y0]
                box = np.clip(box, 0, [w, h, w, h])
                np.testing.assert_allclose(clip.boxes_2d[t][j], box, atol=1e-3)
                # The output intrinsics project the 3D box onto the 2D box (in-image boxes: unclipped).
                proj = clip.camera.intrinsics @ corners.T
                proj = (proj[:2] / proj[2]).T
                if box[0] > 0 and box[2] < w and box[1] > 0 and box[3] < h:
                    np.testing.assert_allclose([*proj.min(0), *proj.max(0)], clip.boxes_2d[t][j], atol=1e-3)
    assert sweeps > 0  # interpolated sweep boxes were checked, not only key frames


def test_without_boxes_the_frames_and_ego_motion_are_the_same(root: Path) -> None:
    kwargs = dict(version=VERSION, frames=4, fps=6.0, size=(64, 128))
    full, bare = NuScenesClips(root, **kwargs)[0], NuScenesClips(root, with_boxes=False, **kwargs)[0]
    assert full is not None and bare is not None
    assert sum(len(b) for b in full.boxes_2d) > 0
    assert (full.frames == bare.frames).all() and np.array_equal(full.ego.speed, bare.ego.speed)
    assert all(b.shape == (0, 4) for b in bare.boxes_2d) and all(b.shape == (0, 8, 3) for b in bare.boxes_3d)
    assert all(len(c) == len(i) == len(v) == 0 for c, i, v in zip(bare.classes, bare.instance_ids, bare.valid))


def test_devkit_projection_clips_to_the_image() -> None:
    corners = np.array([[-2, 2, 2, -2, -2, 2, 2, -2], [-1, -1, 1, 1, -1, -1, 1, 1], [1, 1, 1, 1, 3, 3, 3, 3]], float)
    box = project_box_2d(corners, np.array(K), WIDTH, HEIGHT)
    assert box == (0.0, 0.0, 160.0, 90.0)
    assert project_box_2d(corners * [[1], [1], [-1]], np.array(K), WIDTH, HEIGHT) is None  # behind the camera


def _devkit_box_2d(corners: np.ndarray, intrinsic: np.ndarray, width: int, height: int) -> tuple[float, ...] | None:
    """The devkit's route alone (shapely hull and canvas), the reference of the loader's fast path."""
    from nuscenes.scripts.export_2d_annotations_as_json import post_process_coords
    from nuscenes.utils.geometry_utils import view_points
    from shapely.geometry import MultiPoint, box

    in_front = corners[:, corners[2] > 0]
    if in_front.shape[1] == 0:
        return None
    uv = view_points(in_front, intrinsic, normalize=True).T[:, :2].tolist()
    hull, canvas = MultiPoint(uv).convex_hull, box(0, 0, width, height)
    if not hull.intersects(canvas) or hull.intersection(canvas).geom_type != "Polygon":
        return None
    return post_process_coords(uv, imsize=(width, height))


def test_fast_projection_is_the_devkit_route_to_the_bit() -> None:
    """Boxes inside the image take the fast path, the others the devkit's; both give the devkit's floats."""
    rng = np.random.default_rng(0)
    unit = np.array([[-1, 1, 1, -1, -1, 1, 1, -1], [-1, -1, 1, 1, -1, -1, 1, 1], [-1, -1, -1, -1, 1, 1, 1, 1]], float)
    kinds = {"inside": 0, "clipped": 0, "none": 0}
    for _ in range(3000):
        yaw = rng.uniform(-np.pi, np.pi)
        rot = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
        size = rng.uniform(0.3, 3.0, (3, 1))
        centre = np.array([[rng.uniform(-30, 30)], [rng.uniform(-3, 3)], [rng.uniform(-4, 60)]])
        corners = rot @ (unit * size) + centre
        fast = project_box_2d(corners, np.array(K), WIDTH, HEIGHT)
        assert fast == _devkit_box_2d(corners, np.array(K), WIDTH, HEIGHT)
        if fast is None:
            kinds["none"] += 1
        else:
            inside = 0 < fast[0] and fast[2] < WIDTH and 0 < fast[1] and fast[3] < HEIGHT
            kinds["inside" if inside else "clipped"] += 1
    assert min(kinds.values()) > 100, kinds  # every route was exercised


def test_ego_motion_matches_the_driven_arc(root: Path) -> None:
    ds = NuScenesClips(root, VERSION, frames=5, fps=6.0, size=(45, 80), horizon=3, waypoint_dt=0.5)
    clip = ds[0]
    np.testing.assert_allclose(clip.ego.speed, SPEED, rtol=1e-3)
    np.testing.assert_allclose(clip.ego.yaw_rate, YAW_RATE, rtol=1e-3)
    radius, tau = SPEED / YAW_RATE, 0.5 * np.arange(1, 4)
    expected = np.stack([radius * np.sin(YAW_RATE * tau), radius * (1 - np.cos(YAW_RATE * tau))], -1)
    np.testing.assert_allclose(clip.ego.waypoints[0], expected, atol=2e-3)
    assert clip.ego.waypoint_mask[0].all()
    assert clip.ego.yaw_rate.dtype == np.float32 and clip.ego.speed.shape == (5,)


def test_labels_from_descriptions(root: Path) -> None:
    ds = NuScenesClips(root, VERSION, frames=2, fps=2.0, size=(45, 80))
    by_scene = {ds[i].source.scene: ds[i].labels for i in range(len(ds))}
    assert by_scene["scene-0000"].as_array().tolist() == [2, 2, 2]  # night, rain, crowded
    assert by_scene["scene-0001"].as_array().tolist() == [0, 0, 0]  # "blue sky": unknown, not an error


def test_clips_stay_in_one_scene_and_resample(root: Path) -> None:
    tables = _tables(root)
    ds = NuScenesClips(root, VERSION, frames=6, fps=5.0, size=(45, 80), stride=0.2)
    scenes = set()
    for i in range(len(ds)):
        clip = ds[i]
        scene_of = {tables["sample"][tables["sample_data"][tok]["sample_token"]]["scene_token"] for tok in clip.source.frame_ids}
        assert len(scene_of) == 1
        scenes |= scene_of
        start = round(clip.source.timestamps[0] / 0.2) * 0.2
        targets = start + 0.2 * np.arange(6)
        assert np.all(np.abs(clip.source.timestamps - targets) <= 1 / 24 + 0.005)  # nearest 12 Hz frame
    assert len(scenes) == 2 and len(ds) == 2 * int((3.0 - 1.0) / 0.2 + 1e-6 + 1)


def test_gap_in_the_camera_stream_leaves_clips_out(tmp_path: Path) -> None:
    root = write_nuscenes(tmp_path, VERSION, scenes=1)
    rows = json.loads((root / VERSION / "sample_data.json").read_text())
    dropped = {f"sd-0-{i}" for i in range(7, 12)}  # 0.42 s without frames
    for r in rows:
        if r["next"] in dropped:
            r["next"] = ""
    (root / VERSION / "sample_data.json").write_text(json.dumps([r for r in rows if r["token"] not in dropped]))
    full = NuScenesClips(root, VERSION, frames=3, fps=6.0, size=(45, 80), stride=1 / 6, max_gap=0.1)
    for i in range(len(full)):
        assert not dropped & set(full[i].source.frame_ids)
    times = np.concatenate([full[i].source.timestamps for i in range(len(full))])
    assert not np.any((times > 0.5) & (times < 0.95)) and len(full) > 0


def test_splits_seeded_and_official(tmp_path: Path, root: Path) -> None:
    train = NuScenesClips(root, VERSION, frames=2, fps=2.0, size=(45, 80), split="train")
    val = NuScenesClips(root, VERSION, frames=2, fps=2.0, size=(45, 80), split="val")
    names = lambda ds: {s.scene_name for s in ds.streams}  # noqa: E731
    assert names(train).isdisjoint(names(val)) and names(train) | names(val) == {"scene-0000", "scene-0001"}
    again = NuScenesClips(root, VERSION, frames=2, fps=2.0, size=(45, 80), split="val")
    assert names(again) == names(val)
    mini = write_nuscenes(tmp_path / "mini", "v1.0-mini", scenes=2, names=("scene-0061", "scene-0103"))
    assert names(NuScenesClips(mini, "v1.0-mini", frames=2, fps=2.0, size=(45, 80), split="train")) == {"scene-0061"}
    assert names(NuScenesClips(mini, "v1.0-mini", frames=2, fps=2.0, size=(45, 80), split="val")) == {"scene-0103"}
    assert names(NuScenesClips(mini, "v1.0-mini", frames=2, fps=2.0, size=(45, 80))) == {"scene-0061", "scene-0103"}


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_bad_tables_and_images(tmp_path: Path) -> None:
    root = write_nuscenes(tmp_path / "a", VERSION, scenes=1)
    (root / VERSION / "sample.json").write_text("[{")
    with pytest.raises(DataError) as info:
        NuScenesClips(root, VERSION, frames=2, fps=2.0, size=(45, 80))
    assert "sample.json" in _one_line(info) and "not valid JSON" in str(info.value)

    root = write_nuscenes(tmp_path / "b", VERSION, scenes=1)
    (root / VERSION / "ego_pose.json").unlink()
    with pytest.raises(DataError, match="ego_pose.json: table is missing"):
        NuScenesClips(root, VERSION, frames=2, fps=2.0, size=(45, 80))

    with pytest.raises(DataError, match="not found"):
        NuScenesClips(root, "v9.9-none", frames=2, fps=2.0, size=(45, 80))

    root = write_nuscenes(tmp_path / "c", VERSION, scenes=1)
    (root / "samples" / "CAM_FRONT" / "s0_0000.jpg").unlink()  # a key frame's image
    (root / "sweeps" / "CAM_FRONT" / "s0_0013.jpg").write_bytes(b"not a jpeg")
    ds = NuScenesClips(root, VERSION, frames=3, fps=12.0, size=(45, 80), stride=0.25)
    with pytest.raises(DataError) as info:
        ds[0]
    assert "s0_0000.jpg: image file is missing" in _one_line(info)
    with pytest.raises(DataError, match="s0_0013.jpg: image does not decode"):
        ds[4]
    skipping = NuScenesClips(root, VERSION, frames=3, fps=12.0, size=(45, 80), stride=0.25, on_error="skip")
    results = [skipping[i] for i in range(len(skipping))]
    assert sum(r is None for r in results) == 2 and results[1] is not None

    rows = json.loads((root / VERSION / "sample_data.json").read_text())
    for r in rows:
        r["width"] = 0
    (root / VERSION / "sample_data.json").write_text(json.dumps(rows))
    with pytest.raises(DataError, match="zero-size frames"):
        NuScenesClips(root, VERSION, frames=3, fps=12.0, size=(45, 80))[1]


def test_unknown_camera_is_named(root: Path) -> None:
    with pytest.raises(DataError, match="sensor.json: no camera 'CAM_BACK'"):
        NuScenesClips(root, VERSION, camera="CAM_BACK", frames=2, fps=2.0, size=(45, 80))


def test_visibility_filter(root: Path) -> None:
    # The fixture's pedestrian has visibility level '2', the car '4'.
    every = NuScenesClips(root, VERSION, frames=2, fps=2.0, size=(45, 80))[0]
    visible = NuScenesClips(root, VERSION, frames=2, fps=2.0, size=(45, 80), min_visibility=3)[0]
    assert [c.tolist() for c in every.classes] == [[1, 6]] * 2
    assert [c.tolist() for c in visible.classes] == [[1]] * 2


def test_visibility_filter_reads_levels_of_any_writers_tokens(root: Path, tmp_path: Path) -> None:
    """Another writer's visibility tokens (hashes; the bin in `level`): min_visibility still filters."""
    import hashlib
    import json
    import shutil

    other = tmp_path / "other"
    shutil.copytree(root, other)
    tables = other / VERSION
    rows = json.loads((tables / "visibility.json").read_text())
    token = {r["token"]: hashlib.md5(r["level"].encode()).hexdigest() for r in rows}
    (tables / "visibility.json").write_text(json.dumps([{**r, "token": token[r["token"]]} for r in rows]))
    anns = json.loads((tables / "sample_annotation.json").read_text())
    (tables / "sample_annotation.json").write_text(
        json.dumps([{**a, "visibility_token": token[a["visibility_token"]]} for a in anns]))
    visible = NuScenesClips(other, VERSION, frames=2, fps=2.0, size=(45, 80), min_visibility=3)[0]
    assert [c.tolist() for c in visible.classes] == [[1]] * 2
    odd = tmp_path / "odd"  # a fresh folder: the opened tables are cached per folder
    shutil.copytree(other, odd)
    (odd / VERSION / "visibility.json").write_text(json.dumps([{**r, "token": token[r["token"]], "level": "mostly"} for r in rows]))
    with pytest.raises(DataError, match="visibility.json: visibility .*level 'mostly'"):
        NuScenesClips(odd, VERSION, frames=2, fps=2.0, size=(45, 80), min_visibility=3)


def test_missing_sweep_images_are_left_out_like_a_keyframes_only_download(tmp_path: Path) -> None:
    # nuScenes ships "keyframe blobs only": the tables list every sweep, the sweep images are absent.
    root = write_nuscenes(tmp_path, VERSION, scenes=1)
    for image in (root / "sweeps" / "CAM_FRONT").iterdir():
        image.unlink()
    ds = NuScenesClips(root, VERSION, frames=3, fps=2.0, size=(45, 80))
    assert ds.streams[0].missing_sweeps == 30 and len(ds) == 2
    clip = ds[1]
    assert clip.source.frame_ids == ["sd-0-18", "sd-0-24", "sd-0-30"]  # the key frames, every 0.5 s
    assert [len(b) for b in clip.boxes_2d] == [2, 2, 2] and all(v.all() for v in clip.valid)
    with pytest.raises(DataError, match="no clips of 3 frames at 12.0 fps"):
        NuScenesClips(root, VERSION, frames=3, fps=12.0, size=(45, 80))


def _edit(root: Path, table: str, change) -> None:  # noqa: ANN001 - a small in-place table edit
    path = root / VERSION / f"{table}.json"
    rows = json.loads(path.read_text())
    change(rows)
    path.write_text(json.dumps(rows))


def test_malformed_records_name_their_table(tmp_path: Path) -> None:
    root = write_nuscenes(tmp_path / "a", VERSION, scenes=1)
    _edit(root, "sample_data", lambda rows: rows[3].pop("timestamp"))
    with pytest.raises(DataError) as info:
        NuScenesClips(root, VERSION, frames=3, fps=4.0, size=(45, 80))
    assert _one_line(info).endswith("sample_data.json: record sd-0-3 has no 'timestamp'")
    skipping = NuScenesClips(root, VERSION, frames=3, fps=4.0, size=(45, 80), on_error="skip")
    assert len(skipping) > 0 and "sd-0-3" not in skipping.streams[0].tokens

    root = write_nuscenes(tmp_path / "b", VERSION, scenes=1)
    _edit(root, "sample_annotation", lambda rows: rows[0].__setitem__("instance_token", "f" * 32))
    with pytest.raises(DataError) as info:
        NuScenesClips(root, VERSION, frames=3, fps=4.0, size=(45, 80))
    assert "sample_annotation.json: record ann-0-0-0: instance_token 'fff" in _one_line(info)

    root = write_nuscenes(tmp_path / "c", VERSION, scenes=1)
    _edit(root, "calibrated_sensor", lambda rows: rows[0].pop("camera_intrinsic"))
    with pytest.raises(DataError) as info:
        NuScenesClips(root, VERSION, frames=3, fps=4.0, size=(45, 80))
    assert _one_line(info).endswith("calibrated_sensor.json: record cs-cam has no 'camera_intrinsic' (malformed table)")
    skipping = NuScenesClips(root, VERSION, frames=3, fps=4.0, size=(45, 80), on_error="skip")
    assert len(skipping) > 0 and all(skipping[i] is None for i in range(len(skipping)))

    root = write_nuscenes(tmp_path / "d", VERSION, scenes=1)
    _edit(root, "sample_data", lambda rows: rows[0].__setitem__("ego_pose_token", "e" * 32))
    with pytest.raises(DataError) as info:
        NuScenesClips(root, VERSION, frames=3, fps=4.0, size=(45, 80))[0]
    assert f"sample_data.json: scene scene-0000, frame sd-0-0: a reference to '{'e' * 32}' names no record" in _one_line(info)


def test_a_lidar_channel_is_not_a_camera(tmp_path: Path) -> None:
    root = write_nuscenes(tmp_path, VERSION, scenes=1)
    _edit(root, "sensor", lambda rows: rows.append({"token": "sensor-lidar", "channel": "LIDAR_TOP", "modality": "lidar"}))
    with pytest.raises(DataError, match="sensor.json: 'LIDAR_TOP' is a lidar sensor"):
        NuScenesClips(root, VERSION, camera="LIDAR_TOP", frames=2, fps=2.0, size=(45, 80))
    assert len(NuScenesClips(root, VERSION, frames=2, fps=2.0, size=(45, 80))) > 0


def test_an_official_version_name_with_other_scene_names_gets_a_seeded_split(tmp_path: Path) -> None:
    # Another writer's data labelled v1.0-trainval: no scene has an official name, so no official split applies.
    root = write_nuscenes(tmp_path, "v1.0-trainval", scenes=2, names=("my-drive-a", "my-drive-b"))
    names = [{s.scene_name for s in NuScenesClips(root, "v1.0-trainval", frames=2, fps=2.0, size=(45, 80), split=split).streams}
             for split in ("train", "val")]
    assert names[0].isdisjoint(names[1]) and names[0] | names[1] == {"my-drive-a", "my-drive-b"}


def test_a_sweep_after_the_last_key_frame_holds_its_boxes_as_not_valid(tmp_path: Path) -> None:
    root = write_nuscenes(tmp_path, VERSION, scenes=1)

    def after_last_key(rows: list[dict]) -> None:
        last = next(r for r in rows if r["token"] == "sd-0-36")  # the scene's last key frame, turned into a later sweep
        last["is_key_frame"], last["timestamp"] = False, last["timestamp"] + 40_000

    _edit(root, "sample_data", after_last_key)
    ds = NuScenesClips(root, VERSION, frames=2, fps=12.0, size=(45, 80), stride=1 / 12)
    clip = next(ds[i] for i in range(len(ds)) if ds[i].source.frame_ids[-1] == "sd-0-36")
    assert len(clip.valid[-1]) > 0 and not clip.valid[-1].any() and clip.valid[0].all()


def test_train_and_val_share_one_database_until_a_table_changes(tmp_path: Path) -> None:
    """The devkit tables are loaded once per data config (not once per split), and again when a file changes."""
    root = write_nuscenes(tmp_path / "nus", VERSION, scenes=4)
    train = NuScenesClips(root, VERSION, split="train", size=(32, 64))
    val = NuScenesClips(root, VERSION, split="val", size=(32, 64))
    assert train.nusc is val.nusc
    _edit(root, "scene", lambda rows: rows[0].update(description=rows[0]["description"] + " night"))
    changed = NuScenesClips(root, VERSION, split="train", size=(32, 64))
    assert changed.nusc is not train.nusc
    assert any("night" in s["description"] for s in changed.nusc.scene)
