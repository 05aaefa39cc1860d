"""Latent-scale calibration: after it, the autoencoder's scaled latents of the same data have mean 0
and std 1, and what was done is recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL

from drivesim.models.vae import VideoVAE
from drivesim.training.calibrate import calibrate, latent_statistics, main


def _autoencoder(folder: Path) -> Path:
    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        layers_per_block=1, norm_num_groups=4, scaling_factor=0.18215)
    (folder / "autoencoder").mkdir(parents=True)
    vae.save_pretrained(folder / "autoencoder")
    (folder / "summary.json").write_text(json.dumps({"stage": "autoencoder"}))
    return folder


def test_calibrated_latents_are_standardised(tmp_path: Path) -> None:
    folder = _autoencoder(tmp_path / "ae")
    g = torch.Generator().manual_seed(1)
    clips = [torch.randint(0, 256, (3, 3, 32, 64), generator=g, dtype=torch.uint8) for _ in range(4)]
    before = VideoVAE.from_pretrained(folder / "autoencoder")
    mean0, std0, _ = latent_statistics(before, clips)
    result = calibrate(folder / "autoencoder", clips)  # a diffusers VAE folder
    assert result["scaling_factor"] == pytest.approx(1 / std0) and result["shift_factor"] == pytest.approx(mean0)
    after = VideoVAE.from_pretrained(folder / "autoencoder")
    z = torch.cat([after.encode_video(c[None].float() / 127.5 - 1) for c in clips])
    assert abs(float(z.mean())) < 1e-3 and abs(float(z.std()) - 1.0) < 1e-2
    # decoding undoes the new scale exactly as encoding applied it
    x = clips[0][None].float() / 127.5 - 1
    torch.testing.assert_close(after.decode_video(after.encode_video(x)), before.decode_video(before.encode_video(x)),
                               atol=1e-4, rtol=0)
    assert json.loads((folder / "summary.json").read_text())["latent_calibration"]["values"] == z.numel()


def test_calibrate_command_needs_an_export(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "python -m drivesim.training.calibrate" in capsys.readouterr().err


def test_calibrating_a_later_stage_export_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """An image export's autoencoder is its parent's: rewriting it would invalidate every child."""
    image = Path(__file__).resolve().parents[1] / "drivesim" / "assets" / "demo_cascade" / "image"
    assert main([str(image), "data=synthetic", "data.root=/nonexistent", "data.frames=8"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "expected autoencoder" in err
