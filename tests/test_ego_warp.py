"""The ego-motion warp prior (`sampler.init_guess=ego_warp`): its geometry and its place in the sampler."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from drivesim.pipelines.ego_warp import (
    Warped,
    blend_warps,
    ego_motion,
    ego_warped_frames,
    ego_warps,
    source_grid,
    warp,
)
from drivesim.scenario.camera import PinholeCamera
from drivesim.scenario.timeline import FrameCondition

CAMERA = PinholeCamera.mounted(256, 128, horizontal_fov_deg=70.0, mount_height_m=1.5)


@dataclass
class ConstantDrive:
    """A timeline stand-in: constant speed and yaw rate (NaN after `known_until`)."""

    speed: float
    yaw_rate: float
    known_until: float = math.inf
    camera: PinholeCamera = CAMERA

    def ego_at(self, t: float) -> tuple[float, float]:
        return (self.speed if t < self.known_until else math.nan), self.yaw_rate

    def at(self, t: float) -> FrameCondition:
        return FrameCondition(t, *self.ego_at(t), ())


def test_ego_motion_integrates_speed_and_yaw_rate() -> None:
    x, y, heading = ego_motion(ConstantDrive(9.0, 0.0), 1.0, 1.5)  # type: ignore[arg-type, misc]
    assert x == pytest.approx(4.5) and y == pytest.approx(0.0) and heading == 0.0
    # A constant turn: a chord of the circle of radius v / w.
    v, w, dt = 10.0, 0.5, 1.0
    x, y, heading = ego_motion(ConstantDrive(v, w), 0.0, dt)  # type: ignore[arg-type, misc]
    assert heading == pytest.approx(w * dt)
    assert x == pytest.approx(v / w * math.sin(w * dt), rel=1e-3)
    assert y == pytest.approx(v / w * (1 - math.cos(w * dt)), rel=1e-3)
    back = ego_motion(ConstantDrive(v, w), dt, 0.0)  # type: ignore[arg-type]
    assert back is not None and back[2] == pytest.approx(-w * dt)  # where the ego was, seen from where it is
    assert back[0] == pytest.approx(-v / w * math.sin(w * dt), rel=1e-3)
    assert back[1] == pytest.approx(v / w * (1 - math.cos(w * dt)), rel=1e-3)
    assert ego_motion(ConstantDrive(9.0, 0.0, known_until=1.2), 1.0, 1.5) is None
    straight = ego_motion(ConstantDrive(9.0, math.nan), 0.0, 1.0)  # type: ignore[arg-type]
    assert straight is not None and np.allclose(straight, [9.0, 0.0, 0.0])  # unknown yaw rate: straight on  # type: ignore[arg-type]


def _pixels(grid: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """grid_sample coordinates (1, h, w, 2) -> source cell coordinates (h, w, 2) (x, y), centres at i + 0.5."""
    h, w = size
    g = grid[0].numpy()
    return np.stack([(g[..., 0] + 1) * w / 2, (g[..., 1] + 1) * h / 2], axis=-1)


def test_no_motion_is_the_identity() -> None:
    size = (16, 32)
    src = _pixels(source_grid(CAMERA, np.zeros(3), size, walls_m=8.0), size)
    ys, xs = np.meshgrid(np.arange(16) + 0.5, np.arange(32) + 0.5, indexing="ij")
    assert np.allclose(src[..., 0], xs, atol=1e-4) and np.allclose(src[..., 1], ys, atol=1e-4)
    latent = torch.randn(1, 4, *size)
    assert torch.allclose(warp(latent, source_grid(CAMERA, np.zeros(3), size)), latent, atol=1e-5)


def test_forward_motion_brings_the_road_closer_and_turning_left_moves_the_view_right() -> None:
    size = (16, 32)
    src = _pixels(source_grid(CAMERA, np.array([3.0, 0.0, 0.0]), size), size)
    horizon = size[0] / 2  # a level camera: the horizon crosses the image centre
    below = src[-1, :, 1]  # the bottom row shows ground 3 m nearer than it was: it came from higher up
    assert (below < size[0] - 0.5).all() and (below > horizon).all()
    assert np.allclose(src[-1, :, 0] - 16, -(src[-1, ::-1, 0] - 16), atol=1e-4)  # symmetric left-right
    assert np.allclose(src[: int(horizon), :, :], _pixels(source_grid(CAMERA, np.zeros(3), size), size)[: int(horizon)],
                       atol=1e-3)  # the sky (at infinity) does not move when driving straight
    turned = _pixels(source_grid(CAMERA, np.array([0.0, 0.0, math.radians(5)]), size), size)
    assert (turned[..., 0] < np.arange(32) + 0.5).all()  # what is ahead now was to the left before


def test_walls_move_with_the_ego_where_infinity_does_not() -> None:
    size = (16, 32)
    pose = np.array([3.0, 0.0, 0.0])
    far = _pixels(source_grid(CAMERA, pose, size), size)
    walls = _pixels(source_grid(CAMERA, pose, size, walls_m=4.0), size)
    # Upper left and right corners see the walls: they came from nearer the image centre.
    assert walls[0, 0, 0] > far[0, 0, 0] and walls[0, -1, 0] < far[0, -1, 0]


def test_unknown_ego_motion_gives_no_warp() -> None:
    frame = torch.rand(1, 3, 128, 256)
    out = ego_warped_frames(frame, ConstantDrive(5.0, 0.0, known_until=0.5), 0.0, [0.25, 1.0])  # type: ignore[arg-type]
    assert out[0] is not None and out[1] is None


@pytest.mark.parametrize("pose", [(4.0, 0.5, 0.1), (-3.0, 0.0, 0.0), (1.0, -1.5, -0.2)])
def test_a_ground_point_lands_where_the_old_camera_saw_it(pose: tuple[float, float, float]) -> None:
    """Forward, backward and sideways: a ground point seen at a target cell is sampled where the old camera
    projects it (a pitched camera; the pose's inverse maps the point back to the old ego frame)."""
    camera = PinholeCamera.mounted(256, 128, horizontal_fov_deg=80.0, mount_height_m=1.6, pitch_deg=4.0)
    size = (128, 256)  # full resolution: the warp bends little between two cell centres
    grid = _pixels(source_grid(camera, np.array(pose), size), size)
    x, y, heading = pose
    c, s = math.cos(heading), math.sin(heading)
    checked = 0
    for gx, gy in [(6.0, 0.0), (9.0, 2.0), (12.0, -3.0)]:  # ground points in the new ego frame
        old = np.array([[x + c * gx - s * gy, y + s * gx + c * gy, 0.0]])
        new_pix = camera.project(np.array([[gx, gy, 0.0]]))[0] * (size[1] / 256)
        fx, fy = new_pix[0] - 0.5, new_pix[1] - 0.5  # between cell centres: interpolate the grid bilinearly
        col, row = int(np.floor(fx)), int(np.floor(fy))
        if not (0 <= col < size[1] - 1 and size[0] // 2 < row < size[0] - 1) or camera.ego_to_camera(old)[0, 2] <= 0:
            continue
        ax, ay = fx - col, fy - row
        at = ((1 - ax) * (1 - ay) * grid[row, col] + ax * (1 - ay) * grid[row, col + 1]
              + (1 - ax) * ay * grid[row + 1, col] + ax * ay * grid[row + 1, col + 1])
        want = camera.project(old)[0] * (size[1] / 256)
        assert np.allclose(at, want, atol=0.15), (at, want)  # pixels; the map bends between centres
        checked += 1
    assert checked >= 2


def test_ground_behind_the_old_camera_samples_its_bottom_edge_in_the_same_column() -> None:
    size = (16, 32)
    src = _pixels(source_grid(CAMERA, np.array([-8.0, 0.0, 0.0]), size), size)
    bottom = src[-1]
    assert (bottom[:, 1] > size[0]).all()  # below the frame: the border row
    assert np.allclose(bottom[:, 0], np.arange(32) + 0.5)


def test_a_warp_knows_where_its_picture_never_saw() -> None:
    """Forward in time the road comes nearer: every cell was seen. Back in time the bottom rows show road
    below the old picture (its border repeated): unseen."""
    frame = torch.rand(1, 3, 32, 64)
    drive = ConstantDrive(10.0, 0.0)
    ahead, back = ego_warps(frame, drive, 0.5, [0.75, 0.25])  # type: ignore[arg-type]
    assert ahead is not None and back is not None
    assert ahead.seen.shape == (1, 1, 32, 64) and bool((ahead.seen == 1).all())
    assert bool((back.seen[..., -1, :] == 0).all()) and bool((back.seen[..., :16, :] == 1).all())
    assert torch.equal(ego_warped_frames(frame, drive, 0.5, [0.25])[0], back.frame)  # type: ignore[arg-type]


def test_blend_warps_takes_each_pixel_from_the_keys_that_saw_it() -> None:
    one, two = torch.full((1, 3, 2, 2), 1.0), torch.full((1, 3, 2, 2), -1.0)
    seen_a = torch.tensor([[[[1.0, 1.0], [1.0, 0.0]]]])
    seen_z = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
    out = blend_warps(Warped(one, seen_a), Warped(two, seen_z), 0.25)
    plain = 0.75 * 1.0 + 0.25 * -1.0
    assert torch.allclose(out[0, :, 0, 0], torch.tensor(plain))  # both saw it: by distance in time
    assert torch.allclose(out[0, :, 0, 1], torch.tensor(1.0))  # only the earlier key saw it
    assert torch.allclose(out[0, :, 1, 1], torch.tensor(plain))  # neither: the plain blend
    only_later = blend_warps(Warped(one, seen_z * 0), Warped(two, seen_z), 0.25)
    assert torch.allclose(only_later[0, :, 0, 0], torch.tensor(-1.0))


def test_in_between_guesses_blend_each_frames_two_warped_keys() -> None:
    from drivesim.pipelines.ego_warp import BetweenFrame, warped_between

    keys = torch.rand(2, 3, 32, 64)
    drive = ConstantDrive(8.0, 0.05, known_until=1.0)
    wanted = [BetweenFrame(0, 1, 0.0, 0.5, t, t / 0.5) for t in (0.125, 0.25, 0.375)]
    wanted.append(BetweenFrame(0, 1, 0.75, 1.25, 1.0, 0.5))  # the ego motion is unknown after 1 s
    made = warped_between(keys, drive, wanted)  # type: ignore[arg-type]
    assert made[3] is None
    for a, w in zip(made[:3], wanted):
        assert a is not None
        first = ego_warps(keys[:1], drive, 0.0, [w.time])[0]  # type: ignore[arg-type]
        last = ego_warps(keys[1:], drive, 0.5, [w.time])[0]  # type: ignore[arg-type]
        assert first is not None and last is not None and torch.equal(a, blend_warps(first, last, w.weight))


def test_bad_walls_are_one_line_naming_the_field() -> None:
    from drivesim.pipelines.engine import SamplerSettings, SamplerSettingsError

    engine = _engine_with(SamplerSettings(walls_m=-2.0))
    with pytest.raises(SamplerSettingsError, match=r"^sampler\.walls_m must be > 0"):
        engine.validate()


def _engine_with(sampler: object) -> object:
    from drivesim.pipelines.engine import Engine, StageModel

    class _Unet:
        in_channels = 4

    return Engine(prediction=StageModel(_Unet(), 4), vae=None, schedule={"num_train_timesteps": 1000},  # type: ignore[arg-type]
                  sampler=sampler, fps=3.0, latent_size=(16, 32))  # type: ignore[arg-type]


def test_colour_anchor_moves_each_channels_statistics_part_way_to_the_reference() -> None:
    from drivesim.pipelines.ego_warp import anchor_colours

    gen = torch.Generator().manual_seed(0)
    frame = (torch.rand(2, 3, 16, 32, generator=gen) - 0.5) * 0.4 - 0.3  # dark, low contrast
    reference = (torch.rand(1, 3, 16, 32, generator=gen) - 0.5) * 0.8 + 0.2
    assert torch.allclose(anchor_colours(frame, reference, 0.0), frame, atol=1e-6)
    full = anchor_colours(frame, reference, 1.0)
    assert torch.allclose(full.mean(dim=(-2, -1)), reference.mean(dim=(-2, -1)).expand(2, -1), atol=1e-5)
    assert torch.allclose(full.std(dim=(-2, -1)), reference.std(dim=(-2, -1)).expand(2, -1), atol=1e-5)
    half = anchor_colours(frame, reference, 0.5).mean(dim=(-2, -1))
    want = 0.5 * (frame.mean(dim=(-2, -1)) + reference.mean(dim=(-2, -1)))
    assert torch.allclose(half, want, atol=1e-5)
    # The pattern is kept: the result is an affine map of each channel (correlation 1 with the input).
    a, b = frame[0, 1].flatten(), full[0, 1].flatten()
    assert float(torch.corrcoef(torch.stack([a, b]))[0, 1]) > 0.9999


def test_a_rollout_keeps_its_context_and_its_first_key() -> None:
    from drivesim.pipelines.engine import keys_kept

    keys = {j: torch.full((1,), float(j)) for j in range(-1, 9)}
    assert sorted(keys_kept(keys, 2)) == [-1, 7, 8]
    assert sorted(keys_kept({0: keys[0], 1: keys[1]}, 2)) == [0, 1]


def test_bad_colour_anchor_is_one_line_naming_the_field() -> None:
    from drivesim.pipelines.engine import SamplerSettings, SamplerSettingsError

    engine = _engine_with(SamplerSettings(colour_anchor=1.5))
    with pytest.raises(SamplerSettingsError, match=r"^sampler\.colour_anchor must lie in \[0, 1\]"):
        engine.validate()


def test_banded_colour_anchor_holds_each_band_to_the_same_band_of_the_reference() -> None:
    from drivesim.pipelines.ego_warp import anchor_colours

    gen = torch.Generator().manual_seed(1)
    frame = torch.rand(1, 3, 16, 32, generator=gen) * 0.2 - 0.1  # one grey all over
    reference = torch.cat([torch.full((1, 3, 8, 32), 0.4), torch.full((1, 3, 8, 32), -0.4)], dim=-2)
    reference = reference + torch.rand(1, 3, 16, 32, generator=gen) * 0.1  # bright sky over dark road
    banded = anchor_colours(frame, reference, 1.0, bands=2)
    # The outer half of each band takes that band's own correction: it lands on the reference band's colour.
    for rows, ref_rows in ((slice(0, 4), slice(0, 8)), (slice(12, 16), slice(8, 16))):
        got, want = banded[..., rows, :].mean(dim=(-2, -1)), reference[..., ref_rows, :].mean(dim=(-2, -1))
        assert torch.allclose(got, want, atol=0.03)
    # Between the band centres the correction is interpolated: no seam at the band edge (row 8).
    row_means = banded.mean(dim=(0, 1, 3))
    assert float(row_means.diff().abs().max()) < 0.2 < float(row_means[0] - row_means[-1])
    # One band is the global correction: each channel's mean and spread exactly the reference's.
    plain = anchor_colours(frame, reference, 1.0)
    assert torch.allclose(plain.mean(dim=(-2, -1)), reference.mean(dim=(-2, -1)), atol=1e-5)
    assert torch.allclose(plain.std(dim=(-2, -1)), reference.std(dim=(-2, -1)), atol=1e-5)
    assert float((plain[..., :8, :].mean() - reference[..., :8, :].mean()).abs()) > 0.3  # blind to the bands
    # Rows that do not divide evenly still cover the frame: 16 rows in 3 bands of 6 / 5 / 5.
    assert anchor_colours(frame, reference, 1.0, bands=3).shape == frame.shape
    with pytest.raises(ValueError, match=r"bands must lie in \[1, 16\]"):
        anchor_colours(frame, reference, 1.0, bands=17)


def test_bad_colour_anchor_bands_is_one_line_naming_the_field() -> None:
    from drivesim.pipelines.engine import SamplerSettings, SamplerSettingsError

    for bad in (0, 17):  # the test engine's latents are 16 rows
        with pytest.raises(SamplerSettingsError, match=rf"^sampler\.colour_anchor_bands must lie in \[1, 16\] \(the "
                                                       rf"latent rows\), got {bad}$"):
            _engine_with(SamplerSettings(colour_anchor_bands=bad)).validate()
    _engine_with(SamplerSettings(colour_anchor_bands=16)).validate()
