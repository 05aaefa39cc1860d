"""The clip contract's pieces: resize/crop exactness, the collate, labels, ego motion, splits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from drivesim.data import ResizeCrop, collate_clips
from drivesim.data.clip import Camera, Clip, EgoMotion, Labels, Source, empty_boxes
from drivesim.data.ego import PoseTrack, ego_motion, yaw_from_quaternion
from drivesim.data.labels import CLASSES, class_index, parse_description
from drivesim.data.splits import split_scenes


@pytest.mark.parametrize("src,out", [((900, 1600), (512, 1024)), ((900, 1600), (128, 256)), ((90, 160), (37, 71)),
                                     ((60, 40), (50, 50)), ((33, 47), (100, 13))])
def test_resize_crop_maps_pixels_boxes_and_intrinsics_identically(src: tuple[int, int], out: tuple[int, int]) -> None:
    tf = ResizeCrop(*src, *out)
    h, w = src
    image = np.zeros((h, w, 3), np.uint8)
    image[h // 4 : h // 2, w // 3 : (2 * w) // 3] = 255  # a white block whose edges we can find
    result = tf.image(image)
    assert result.shape == (*out, 3)
    box, keep = tf.boxes(np.array([[w // 3, h // 4, (2 * w) // 3, h // 2]]))
    assert keep.all()
    mask = result[..., 0] > 127
    rows, cols = np.nonzero(mask)
    if len(rows):  # the block's resampled pixels lie within a pixel of the transformed box
        assert cols.min() >= np.floor(box[0, 0]) - 1 and cols.max() + 1 <= np.ceil(box[0, 2]) + 1
        assert rows.min() >= np.floor(box[0, 1]) - 1 and rows.max() + 1 <= np.ceil(box[0, 3]) + 1
    k = np.array([[500.0, 0, w / 2], [0, 480.0, h / 2], [0, 0, 1]])
    point = np.array([0.3, -0.2, 4.0])
    uv = k @ point
    uv2 = tf.intrinsics(k) @ point
    np.testing.assert_allclose(uv2[:2] / uv2[2], tf.points(uv[:2] / uv[2]), atol=1e-9)
    rh, rw = tf.resized
    assert abs(rw / rh - w / h) <= max(1 / rh, 1 / rw) * (w / h) + 1e-9 and rh >= out[0] and rw >= out[1]


def test_resize_crop_rejects_zero_sizes() -> None:
    with pytest.raises(ValueError, match="zero size"):
        ResizeCrop(0, 10, 4, 4)


def _clip(t: int, counts: list[int], h: int = 8, w: int = 12) -> Clip:
    fields = empty_boxes(t)
    for i, n in enumerate(counts):
        fields["boxes_2d"][i] = np.tile(np.array([[1, 2, 3, 4]], np.float32), (n, 1)) * (i + 1)
        fields["boxes_3d"][i] = np.ones((n, 8, 3), np.float32)
        fields["classes"][i] = np.full(n, 1, np.int64)
        fields["instance_ids"][i] = np.arange(n)
        fields["valid"][i] = np.ones(n, bool)
    return Clip(frames=torch.zeros(t, 3, h, w, dtype=torch.uint8), fps=3.0, ego=EgoMotion.unknown(t, 4, 0.5),
                labels=Labels(2, 1, 0), camera=Camera(intrinsics=np.eye(3)),
                source=Source("x", "s", np.arange(t) / 3.0), **fields)


def test_collate_pads_boxes_with_a_mask_and_counts_skips() -> None:
    batch = collate_clips([_clip(3, [0, 2, 1]), None, _clip(3, [3, 0, 0]), None])
    assert batch.frames.shape == (2, 3, 3, 8, 12) and batch.frames.dtype == torch.uint8
    assert batch.boxes_2d.shape == (2, 3, 3, 4) and batch.skipped == 2 and len(batch) == 2
    assert batch.box_mask[0].sum(-1).tolist() == [0, 2, 1] and batch.box_mask[1].sum(-1).tolist() == [3, 0, 0]
    assert torch.equal(batch.boxes_2d[0, 1, :2], torch.tensor([[2.0, 4, 6, 8]] * 2)) and batch.boxes_2d[0, 1, 2].abs().sum() == 0
    assert batch.labels.tolist() == [[2, 1, 0]] * 2 and torch.isnan(batch.speed).all()
    assert batch.boxes_3d.shape == (2, 3, 3, 8, 3) and batch.waypoints.shape == (2, 3, 4, 2)
    empty = collate_clips([None, None])
    assert len(empty) == 0 and empty.skipped == 2
    with pytest.raises(ValueError, match="differ in shape"):
        collate_clips([_clip(3, [0, 0, 0]), _clip(3, [0, 0, 0], h=9)])


def test_clip_padded_view_and_validation() -> None:
    clip = _clip(3, [1, 0, 2])
    assert clip.box_mask.tolist() == [[True, False], [False, False], [True, True]]
    assert clip.boxes_2d_padded.shape == (3, 2, 4)
    with pytest.raises(ValueError, match="uint8"):
        Clip(**{**clip.__dict__, "frames": torch.zeros(3, 3, 4, 4)})


def test_labels_parse_known_words_and_leave_the_rest_unknown() -> None:
    assert parse_description("Night, rain, parking lot").as_array().tolist() == [2, 2, 0]
    assert parse_description("Day, clear, heavy traffic").as_array().tolist() == [1, 1, 2]
    assert parse_description("Nachts im Regen").as_array().tolist() == [0, 0, 0]
    assert parse_description("").as_array().tolist() == [0, 0, 0]
    assert parse_description("midnight nightfall").time_of_day == 0  # whole words only
    assert CLASSES[class_index("vehicle.bus.rigid")] == "bus" and class_index("animal") == 0


def test_ego_motion_from_uneven_poses() -> None:
    rng = np.random.default_rng(0)
    times = np.sort(np.arange(0, 4, 1 / 12) + rng.uniform(-0.004, 0.004, 48))
    # Straight line heading 30 degrees, accelerating 1 m/s^2 from 5 m/s; yaw constant.
    heading = np.deg2rad(30)
    dist = 5 * times + 0.5 * times**2
    track = PoseTrack(times, np.stack([dist * np.cos(heading), dist * np.sin(heading), 0 * dist], -1), np.full(48, heading))
    ego = ego_motion(track, np.array([1.0, 2.0]), horizon=2, waypoint_dt=0.5)
    np.testing.assert_allclose(ego.speed, [6.0, 7.0], atol=1e-3)
    np.testing.assert_allclose(ego.yaw_rate, 0.0, atol=1e-9)
    # Waypoints straight ahead (x forward), none to the side.
    np.testing.assert_allclose(ego.waypoints[0, :, 0], [6 * 0.5 + 0.125, 6 * 1.0 + 0.5], atol=1e-3)
    np.testing.assert_allclose(ego.waypoints[..., 1], 0.0, atol=1e-6)
    assert ego.waypoint_mask.tolist() == [[True, True], [True, True]]
    late = ego_motion(track, np.array([3.6]), horizon=2, waypoint_dt=0.5)
    assert late.waypoint_mask.tolist() == [[False, False]]
    assert yaw_from_quaternion(np.array([np.cos(0.4), 0, 0, np.sin(0.4)])) == pytest.approx(0.8)


def test_seeded_splits_are_disjoint_and_stable() -> None:
    names = [f"s{i}" for i in range(10)]
    train, val = split_scenes("v1.0-x", names, "train", 3), split_scenes("v1.0-x", names, "val", 3)
    assert set(train).isdisjoint(val) and sorted(train + val) == names and len(val) == 2
    assert split_scenes("v1.0-x", list(reversed(names)), "val", 3) == list(reversed(val))
    assert split_scenes("v1.0-x", names, "val", 4) != val or split_scenes("v1.0-x", names, "val", 5) != val
    assert split_scenes("v1.0-x", names, None) == names
    assert split_scenes("v1.0-trainval", ["scene-0001", "scene-0003"], "val") == ["scene-0003"]
    with pytest.raises(ValueError, match="split"):
        split_scenes("v1.0-test", ["scene-0077"], "train")
    # No official scene name under an official version (another writer's data): the seeded split.
    assert split_scenes("v1.0-trainval", names, "val", 3) == val
