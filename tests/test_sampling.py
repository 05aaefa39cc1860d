"""Samplers over video latents and per-condition classifier-free guidance."""

from __future__ import annotations

import pytest
import torch
from generate_fixtures import SCHEDULE, micro_unet

from drivesim.diffusion.cfg import GuidancePlan, GuidedDenoiser, present_conditions
from drivesim.diffusion.sampling import SAMPLERS, GivenFrames, make_scheduler, sample_video
from drivesim.models import VideoCondition
from drivesim.models.conditioning.guidance import without

B, T, C, H, W = 2, 4, 4, 8, 16


@pytest.fixture(scope="module")
def unet() -> torch.nn.Module:
    torch.set_num_threads(1)
    return micro_unet()


def _cond(seed: int = 1) -> VideoCondition:
    g = torch.Generator().manual_seed(seed)
    boxes = torch.rand(B, T, 3, 2, generator=g) * 0.5
    return VideoCondition(
        context_latents=torch.randn(B, T, C, H, W, generator=g), context_mask=torch.tensor([[1.0, 1, 0, 0]] * B),
        boxes=torch.cat([boxes, boxes + 0.3], dim=-1), box_classes=torch.ones(B, T, 3, dtype=torch.long),
        box_instance_ids=torch.arange(3).expand(B, T, 3).clone(), box_mask=torch.ones(B, T, 3, dtype=torch.bool),
        labels=torch.tensor([[1, 0, 2], [0, 1, -1]]), ego_speed=torch.full((B, T), 8.0),
        ego_yaw_rate=torch.zeros(B, T), text=torch.randn(B, 2, 32, generator=g))


NULL = torch.zeros(2, 32)


def _model(unet: torch.nn.Module):  # type: ignore[no-untyped-def]
    return lambda x, t, c: unet(x, t, c)


def test_present_conditions_and_branches() -> None:
    cond = _cond()
    assert present_conditions(cond) == ("context", "boxes", "labels", "ego", "text")
    plan = GuidancePlan.build(cond, {"boxes": 2.0, "labels": 1.0, "text": 3.0})
    assert plan.guided == ("boxes", "text")
    assert plan.branches() == [frozenset({"boxes", "text"}), frozenset({"text"}), frozenset({"boxes"})]
    nested_plan = GuidancePlan.build(cond, {"boxes": 2.0, "text": 3.0}, "nested")
    assert nested_plan.branches() == [frozenset({"boxes", "text"}), frozenset({"text"}), frozenset()]
    assert GuidancePlan.build(cond, {}).branches() == [frozenset()]
    with pytest.raises(ValueError, match="weather"):
        GuidancePlan.build(cond, {"weather": 2.0})


@pytest.mark.parametrize("mode", ["composed", "nested"])
def test_batched_guidance_equals_separate_calls(unet: torch.nn.Module, mode: str) -> None:
    cond = _cond()
    x = torch.randn(B, T, C, H, W, generator=torch.Generator().manual_seed(3))
    t = torch.full((B,), 500)
    scales = {"context": 1.5, "boxes": 2.0, "ego": 0.5, "text": 3.0}
    with torch.no_grad():
        got = GuidedDenoiser(_model(unet), scales, mode, null_text=NULL)(x, t, cond)
        got_small = GuidedDenoiser(_model(unet), scales, mode, null_text=NULL, max_batch=3)(x, t, cond)
        guided = ["context", "boxes", "ego", "text"]
        f_u = unet(x, t, without(cond, guided, NULL))
        if mode == "composed":
            expected = f_u.clone()
            for name in guided:
                f_c = unet(x, t, without(cond, [n for n in guided if n != name], NULL))
                expected += scales[name] * (f_c - f_u)
        else:
            expected, prev = f_u.clone(), f_u
            for i, name in enumerate(guided):
                cur = unet(x, t, without(cond, guided[i + 1:], NULL))
                expected += scales[name] * (cur - prev)
                prev = cur
    # Outputs are O(10) and the scales sum to 7: batch-size rounding (~5e-6 per call) stays below 1e-4.
    assert got.shape == (B, T, C, H, W)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(got_small, got, atol=1e-4, rtol=0)
    assert (got - unet(x, t, cond)).abs().max() > 0.1  # guidance changes the output


def test_scale_one_everywhere_is_the_conditional_model(unet: torch.nn.Module) -> None:
    cond = _cond()
    x = torch.randn(B, T, C, H, W)
    with torch.no_grad():
        out = GuidedDenoiser(_model(unet), {n: 1.0 for n in present_conditions(cond)})(x, torch.tensor([10, 10]), cond)
        torch.testing.assert_close(out, unet(x, torch.tensor([10, 10]), cond))
        # A scale of 0 on boxes is the model without boxes.
        zero = GuidedDenoiser(_model(unet), {"boxes": 0.0})(x, torch.tensor([10, 10]), cond)
        torch.testing.assert_close(zero, unet(x, torch.tensor([10, 10]), without(cond, ["boxes"])), atol=1e-4,
                                   rtol=0)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_samplers_keep_given_frames_clean_and_are_seeded(unet: torch.nn.Module, name: str) -> None:
    cond = _cond()
    given = GivenFrames(cond.context_latents, cond.context_mask)  # type: ignore[arg-type]
    den = GuidedDenoiser(_model(unet), {"context": 2.0})

    def run(seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        noise = torch.randn(B, T, C, H, W, generator=g)
        with torch.no_grad():
            return sample_video(den, make_scheduler(name, SCHEDULE, "trailing"), noise, cond, 4, given, g)

    a, b, c = run(0), run(0), run(1)
    assert a.shape == (B, T, C, H, W) and torch.isfinite(a).all()
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert not torch.equal(a[:, 2:], c[:, 2:])
    torch.testing.assert_close(a[:, :2], cond.context_latents[:, :2], atol=0, rtol=0)  # type: ignore[index]


def test_clean_context_frames_do_not_depend_on_the_noise(unet: torch.nn.Module) -> None:
    """The given frames come out as their clean latents whatever the starting noise (invariance)."""
    cond = _cond()
    given = GivenFrames(cond.context_latents, cond.context_mask)  # type: ignore[arg-type]
    outs = []
    for seed in (0, 1):
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            outs.append(sample_video(GuidedDenoiser(_model(unet), {}), make_scheduler("ddim", SCHEDULE),
                                     torch.randn(B, T, C, H, W, generator=g), cond, 3, given, g))
    torch.testing.assert_close(outs[0][:, :2], outs[1][:, :2], atol=0, rtol=0)


def test_unknown_sampler_is_an_error() -> None:
    with pytest.raises(ValueError, match="sampler.name"):
        make_scheduler("heun9", SCHEDULE)


def test_context_init_blends_the_nearest_given_frames() -> None:
    from drivesim.diffusion.sampling import context_init

    z = torch.zeros(1, 6, 1, 2, 2)
    z[:, 0], z[:, 4] = 1.0, 5.0
    guess = context_init(GivenFrames(z, torch.tensor([[1.0, 0, 0, 0, 1, 0]])))
    assert guess[0, :, 0, 0, 0].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 5.0]  # between: by distance; after: the last
    with pytest.raises(ValueError, match="at least one given frame"):
        context_init(GivenFrames(z, torch.zeros(1, 6)))


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_init_strength_starts_part_way_from_the_guess(unet: torch.nn.Module, name: str) -> None:
    """Strength s runs round(steps x s) steps from the guess: a low strength stays near the guess (far
    nearer than a run from pure noise), strength 1 ignores it, and (0, 1] is enforced."""
    from drivesim.diffusion.sampling import context_init

    cond = _cond()
    given = GivenFrames(cond.context_latents, cond.context_mask)  # type: ignore[arg-type]
    guess = context_init(given)
    den = GuidedDenoiser(_model(unet), {})
    calls: list[int] = []

    def counting(x: torch.Tensor, t: torch.Tensor, c: VideoCondition) -> torch.Tensor:
        calls.append(int(t[0]))
        return den(x, t, c)

    def run(strength: float) -> torch.Tensor:
        g = torch.Generator().manual_seed(0)
        noise = torch.randn(B, T, C, H, W, generator=g)
        with torch.no_grad():
            return sample_video(counting, make_scheduler(name, SCHEDULE, "trailing"), noise, cond, 10, given, g,
                                guess, strength)

    calls.clear()
    low = run(0.2)
    assert len(calls) == 2 and max(calls) < 500
    full = run(1.0)
    calls.clear()
    torch.testing.assert_close(run(1.0), full, atol=0, rtol=0)
    assert len(calls) == 10
    assert float((low - guess)[:, 2:].abs().mean()) < 0.5 * float((full - guess)[:, 2:].abs().mean())
    with pytest.raises(ValueError, match="init_strength"):
        run(0.0)


def test_frame_correlated_noise_shares_the_set_part_and_keeps_unit_variance() -> None:
    from drivesim.diffusion.sampling import frame_correlated_noise

    base = torch.randn(64, 6, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    assert frame_correlated_noise(base, 0.0, torch.Generator().manual_seed(1)) is base  # no draw, no change
    one_frame = base[:, :1]
    assert frame_correlated_noise(one_frame, 0.5, torch.Generator().manual_seed(1)) is one_frame
    for rho in (0.3, 0.8):
        x = frame_correlated_noise(base, rho, torch.Generator().manual_seed(1))
        assert abs(float(x.std()) - 1.0) < 0.02
        a, b = x[:, 0].flatten(), x[:, 3].flatten()
        corr = float(((a - a.mean()) * (b - b.mean())).mean() / (a.std() * b.std()))
        assert abs(corr - rho) < 0.03
        again = frame_correlated_noise(base, rho, torch.Generator().manual_seed(1))
        assert torch.equal(x, again)  # the shared part comes from the generator alone
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match=r"noise_correlation must lie in \[0, 1\)"):
            frame_correlated_noise(base, bad)
