"""The ego warp with the agents' boxes (`sampler.warp_boxes`): each box moves rigidly with its own track, and
what a box hid in the picture becomes the road just before it, not a second copy of the box."""

from __future__ import annotations

import numpy as np
import torch

from drivesim.pipelines.box_warp import MovingBox, moving_boxes
from drivesim.pipelines.ego_warp import ego_warped_frames, source_grid
from drivesim.scenario.camera import PinholeCamera
from drivesim.scenario.spec import Agent, Keys, Scenario
from drivesim.scenario.timeline import Timeline

CAMERA = PinholeCamera.mounted(256, 128, horizontal_fov_deg=70.0, mount_height_m=1.5)
SIZE = (128, 256)
CAR = (4.0, 2.0, 1.5)


def _source_of(grid: torch.Tensor, point_ego: tuple[float, float, float]) -> np.ndarray:
    """Where the warp samples the picture for the target cell nearest `point_ego`'s projection (pixels)."""
    u, v = CAMERA.project(np.array([point_ego]))[0]
    g = grid[0, int(v), int(u)].numpy()
    return np.array([(g[0] + 1) * SIZE[1] / 2, (g[1] + 1) * SIZE[0] / 2])


def test_a_box_keeping_pace_with_the_ego_stays_where_it_is_and_the_ground_moves() -> None:
    pose = np.array([3.0, 0.0, 0.0])  # the ego drove 3 m; the car ahead too: same place in the ego frame
    car = MovingBox(CAR, target=(12.0, 0.0, 0.0, 0.0), source=(12.0, 0.0, 0.0, 0.0))
    on_car = (10.0, 0.0, 0.75)  # the middle of its rear face
    cell = CAMERA.project(np.array([on_car]))[0]
    with_box = _source_of(source_grid(CAMERA, pose, SIZE, boxes=[car]), on_car)
    ground_only = _source_of(source_grid(CAMERA, pose, SIZE), on_car)
    assert np.allclose(with_box, np.floor(cell) + 0.5, atol=0.6)  # the same cell (the grid is at cell centres)
    assert abs(ground_only[1] - with_box[1]) > 2.0  # lying on the ground it would have been stretched


def test_a_box_that_drove_on_is_sampled_at_its_old_place() -> None:
    car = MovingBox(CAR, target=(16.0, 0.0, 0.0, 0.0), source=(12.0, 0.0, 0.0, 0.0))  # 4 m further, ego still
    source = _source_of(source_grid(CAMERA, np.zeros(3), SIZE, boxes=[car]), (14.0, 0.0, 0.75))
    want = CAMERA.project(np.array([[10.0, 0.0, 0.75]]))[0]  # the same point of the car 4 m back
    assert np.allclose(source, want, atol=1.0)


def test_road_a_box_hid_is_taken_from_just_before_the_box() -> None:
    # The car drove off to the left; the road at 12 m was behind it in the picture.
    car = MovingBox(CAR, target=(8.0, 12.0, 0.0, 0.0), source=(8.0, 0.0, 0.0, 0.0))
    road = (12.0, 0.0, 0.0)
    front_bottom = CAMERA.project(np.array([[6.0, 0.0, 0.0]]))[0]  # the bottom edge of its rear face
    seen = _source_of(source_grid(CAMERA, np.zeros(3), SIZE, boxes=[car]), road)
    ghost = _source_of(source_grid(CAMERA, np.zeros(3), SIZE, boxes=[car], occlusion=False), road)
    assert seen[1] > front_bottom[1] + 1.0  # road below (before) the car
    assert ghost[1] < front_bottom[1]  # without the occlusion test: the car's own pixels, a second copy


def test_road_a_low_box_hid_through_its_top_is_taken_from_before_its_footprint() -> None:
    # A 1-m box lower than the camera: the ray to the road at 30 m passes over its near face and enters
    # through its top, ~11 m ahead, over the box's own footprint (10-14 m).
    low = MovingBox((4.0, 2.0, 1.0), target=(12.0, 12.0, 0.0, 0.0), source=(12.0, 0.0, 0.0, 0.0))
    seen = _source_of(source_grid(CAMERA, np.zeros(3), SIZE, boxes=[low]), (30.0, 0.0, 0.0))
    near_bottom = CAMERA.project(np.array([[10.0, 0.0, 0.0]]))[0]
    assert seen[1] > near_bottom[1] + 1.0  # road before the box, not the road under it (the box's picture)


def test_sky_a_tall_box_hid_is_taken_from_above_the_box() -> None:
    # A 3.5-m box drove off to the left; the sky just above the horizon was behind it in the picture.
    tall = MovingBox((4.0, 2.0, 3.5), target=(12.0, 12.0, 0.0, 0.0), source=(12.0, 0.0, 0.0, 0.0))
    sky = (1000.0, 0.0, 1.5 + 1000.0 * 0.06)
    top = CAMERA.project(np.array([[10.0, 0.0, 3.5]]))[0]  # the box's outline: its near top edge
    seen = _source_of(source_grid(CAMERA, np.zeros(3), SIZE, boxes=[tall]), sky)
    ghost = _source_of(source_grid(CAMERA, np.zeros(3), SIZE, boxes=[tall], occlusion=False), sky)
    assert seen[1] < top[1] - 1.0  # sky above the box
    assert ghost[1] > top[1]  # without the occlusion test: the box's own pixels


def _timeline() -> Timeline:
    def track(rows: list[list[float]]) -> Keys:
        values = np.array(rows)
        return Keys(values[:, 0], values[:, 1:])

    agents = (Agent("lead", "car", CAR, track([[0.0, 12.0, 0.0, 0.0, 0.0], [2.0, 16.0, 0.0, 0.0, 0.0]])),
              Agent("late", "car", CAR, track([[1.0, 20.0, 3.0, 0.0, 0.0], [2.0, 20.0, 3.0, 0.0, 0.0]])),
              Agent("flat", "car", CAR, None, Keys(np.array([0.0, 2.0]), np.array([[0.1, 0.5, 0.2, 0.6]] * 2))))
    scenario = Scenario("boxes", 2.0, {}, None, Keys(np.array([0.0]), np.array([[0.0]])), None, agents, None,
                        None, "test")
    return Timeline(scenario, CAMERA)


def test_moving_boxes_are_the_3d_agents_known_at_both_times() -> None:
    boxes = moving_boxes(_timeline(), 0.0, 1.0)
    assert [b.target[0] for b in boxes] == [14.0] and boxes[0].source[0] == 12.0  # not "late", not the 2D one
    assert len(moving_boxes(_timeline(), 1.0, 2.0)) == 2


def test_warped_frames_with_boxes_differ_from_ground_only_only_on_the_box() -> None:
    frame = torch.rand(1, 3, *SIZE)
    plain, boxed = (ego_warped_frames(frame, _timeline(), 0.0, [1.0], boxes=b)[0] for b in (False, True))
    assert plain is not None and boxed is not None
    changed = (plain - boxed).abs().amax(dim=1)[0] > 1e-6
    x0, y0 = CAMERA.project(np.array([[14.0 - 2.0, 1.0, 1.5]]))[0]  # the lead car's rear face, in view at 1 s
    x1, y1 = CAMERA.project(np.array([[14.0 - 2.0, -1.0, 0.0]]))[0]
    assert changed[int(y0) + 1:int(y1) - 1, int(x0) + 1:int(x1) - 1].all()
    assert changed.float().mean() < 0.25  # and a little behind it (what it hid), not the whole frame


def test_warp_boxes_reaches_the_engine_settings() -> None:
    from omegaconf import OmegaConf

    from drivesim.pipelines.loading import sampler_settings

    node = OmegaConf.create({"name": "ddim", "steps": 4, "eta": 0.0, "timestep_spacing": "trailing", "guidance": {},
                             "guidance_mode": "composed", "max_batch": 0, "init_guess": "ego_warp",
                             "init_strength": 0.5, "warp_boxes": True})
    assert sampler_settings(node).warp_boxes is True
    assert sampler_settings(OmegaConf.masked_copy(node, [k for k in node if k != "warp_boxes"])).warp_boxes is False


def test_the_boxes_view_rectangles_in_one_pass_match_one_box_at_a_time() -> None:
    """`_in_view` (all boxes in one array pass) gives each box's corners as `box_corners` and the rectangle
    of its picture: the extent of its corners cut to the frame, `project_box`'s outline for a box crossing
    the near plane, None behind the camera or beside the frame."""
    from drivesim.pipelines.box_warp import _in_view
    from drivesim.scenario.camera import box_corners, boxes_corners, project_box

    camera = PinholeCamera.mounted(256, 128, horizontal_fov_deg=70.0, mount_height_m=1.5)
    poses = [(12.0, 1.0, 0.3, 0.0), (0.5, 0.0, 0.0, 0.0), (-10.0, 0.0, 0.0, 0.0), (10.0, 40.0, 0.0, 0.0),
             (30.0, -3.0, -1.2, 0.5)]
    sizes = [(4.5, 1.9, 1.6), (4.0, 2.0, 1.5), (4.0, 2.0, 1.5), (4.0, 2.0, 1.5), (0.8, 0.8, 1.8)]
    pose = np.array(poses)
    batched = boxes_corners(pose[:, :2], pose[:, 2], np.array(sizes), pose[:, 3])
    for b, (p, s) in enumerate(zip(poses, sizes)):
        assert np.allclose(batched[b], box_corners(p[:2], p[2], s, p[3]), atol=1e-12)
    to_cam = np.linalg.inv(camera.cam_to_ego)
    views = _in_view(camera, to_cam, poses, sizes)
    assert views[2] is None and views[3] is None  # behind the camera; far to the left, out of the frame
    crossing = project_box(camera, box_corners(poses[1][:2], 0.0, sizes[1], 0.0))  # the camera sits in it
    assert crossing is not None and views[1] is not None and np.allclose(views[1], crossing)
    for b in (0, 4):
        uv = camera.project(box_corners(poses[b][:2], poses[b][2], sizes[b], poses[b][3]))
        want = [max(uv[:, 0].min(), 0), max(uv[:, 1].min(), 0), min(uv[:, 0].max(), 256), min(uv[:, 1].max(), 128)]
        assert views[b] is not None and np.allclose(views[b], want)
    assert _in_view(camera, to_cam, [], []) == []
