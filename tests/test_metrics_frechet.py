"""frechet_distance against closed forms and an independent float64 reference (scipy sqrtm)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import scipy.linalg

from drivesim.metrics import GaussianStats, frechet_distance


def scipy_reference(mu1, s1, mu2, s2) -> float:
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real)


def test_diagonal_gaussians_match_the_closed_form() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0.1, 3, 16), rng.uniform(0.1, 3, 16)
    mu1, mu2 = rng.normal(size=16), rng.normal(size=16)
    expected = float(((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum())
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)


def test_full_covariances_match_scipy() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(200, 24)), rng.normal(size=(150, 24)) @ rng.normal(size=(24, 24)) * 0.5 + 1
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    mu1, mu2 = x.mean(0), y.mean(0)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(scipy_reference(mu1, s1, mu2, s2), rel=1e-9)


@pytest.mark.parametrize("n", [5, 20])
def test_near_singular_covariances_match_scipy(n: int) -> None:
    # fewer samples than dimensions: both covariances are rank-deficient, as with few frames in 2048-d
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(n, 32)), rng.normal(size=(n, 32)) + 0.3
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    got = frechet_distance(x.mean(0), s1, y.mean(0), s2)
    assert np.isfinite(got) and got > 0
    assert got == pytest.approx(scipy_reference(x.mean(0), s1, y.mean(0), s2), rel=1e-6)


def test_identical_sets_give_zero_and_zero_matrices_are_finite() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(50, 8))
    s = np.cov(x, rowvar=False)
    assert frechet_distance(x.mean(0), s, x.mean(0), s) == pytest.approx(0.0, abs=1e-10)
    zero = np.zeros((8, 8))
    assert frechet_distance(np.zeros(8), zero, np.ones(8), zero) == pytest.approx(8.0)


def test_the_ridge_is_used_only_when_not_finite(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    from drivesim.metrics import frechet

    calls = []
    real = frechet._trace_sqrt_product

    def flaky(a, b):
        calls.append(a[0, 0])
        return float("nan") if len(calls) == 1 else real(a, b)

    monkeypatch.setattr(frechet, "_trace_sqrt_product", flaky)
    with caplog.at_level(logging.WARNING):
        value = frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(3))
    assert np.isfinite(value) and value == pytest.approx(0.0, abs=1e-5)
    assert len(calls) == 2 and "singular" in caplog.text


@pytest.mark.parametrize(("args", "match"), [
    ((np.zeros(3), np.eye(3), np.zeros(4), np.eye(4)), "shapes"),
    ((np.zeros(3), np.eye(2), np.zeros(3), np.eye(3)), "shapes"),
    ((np.full(3, np.nan), np.eye(3), np.zeros(3), np.eye(3)), "mu1"),
])
def test_bad_inputs_are_one_line_errors(args, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        frechet_distance(*args)


def test_stats_from_sums_equal_stats_from_features() -> None:
    rng = np.random.default_rng(4)
    f = rng.normal(size=(40, 6))
    a = GaussianStats.from_features(f)
    b = GaussianStats.from_sums(f.sum(0), f.T @ f, 40)
    np.testing.assert_allclose(a.mu, b.mu, atol=1e-12)
    np.testing.assert_allclose(a.sigma, b.sigma, atol=1e-10)


def _exact_trace_sqrt(real: GaussianStats, samples: np.ndarray) -> float:
    """tr((S_real S_samples)^(1/2)) at 40 digits (mpmath) on the N x N form: the reference for both routes."""
    import mpmath

    mpmath.mp.dps = 40
    n, c = samples.shape[0], samples - samples.mean(0)
    small = mpmath.matrix(c.tolist()) * mpmath.matrix(real.sigma.tolist()) * mpmath.matrix(c.T.tolist()) / (n - 1)
    return float(sum(mpmath.sqrt(max(e, 0)) for e in mpmath.eigsy(small)[0]))


@pytest.mark.parametrize("n,d", [(2, 64), (8, 256), (24, 64), (64, 64), (100, 32)])
def test_distance_to_few_samples_is_the_full_distance(n: int, d: int) -> None:
    """The drift windows' N x N route (N < D) gives the distance to round-off (40-digit reference); the
    D x D route is off by ~1e-6 relative there (square roots of its round-off eigenvalues), so it gets a looser
    bound; with N >= D both routes are the same code."""
    rng = np.random.default_rng(n * 1000 + d)
    real = GaussianStats.from_features(rng.normal(size=(3 * d, d)) @ rng.normal(size=(d, d)) * 0.3)
    samples = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) * 0.2 + 0.5
    full = real.distance(GaussianStats.from_features(samples))
    fast = real.distance_to_samples(samples)
    if n >= d:
        assert fast == full
        return
    diff = samples.mean(0) - real.mu
    exact = (float(diff @ diff) + np.trace(real.sigma) + np.trace(np.cov(samples, rowvar=False))
             - 2 * _exact_trace_sqrt(real, samples))
    # Round-off of the trace terms (~1e-16 of their sum, which cancels to the distance) and the BLAS's
    # thread split move the last digits between machines: 1e-8 is still 1000x under the D x D route's error.
    assert fast == pytest.approx(exact, rel=1e-8)
    assert full == pytest.approx(exact, rel=1e-5)
    assert abs(fast - exact) < abs(full - exact)


def test_distance_to_samples_refuses_wrong_shapes() -> None:
    real = GaussianStats.from_features(np.random.default_rng(0).normal(size=(10, 4)))
    with pytest.raises(ValueError, match="need features"):
        real.distance_to_samples(np.zeros((5, 3)))
    with pytest.raises(ValueError, match="need features"):
        real.distance_to_samples(np.zeros((1, 4)))
