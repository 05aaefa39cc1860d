"""Fit an autoencoder's latent scale to its data: `shift_factor` = mean and `scaling_factor` = 1 / std
of the posterior means over sampled training frames (the LDM recipe; diffusers reads both).

The diffusion noise schedules assume unit-variance latents. The demo autoencoder trained by drivesim
kept SD's 0.18215, which gives its latents a std of about 0.49 (session 7): every noise level then
has a quarter of its nominal signal-to-noise ratio. Calibrate before the first diffusion stage is
trained on the autoencoder (latent caches are keyed by its digest, so they follow).

    python -m drivesim.training.calibrate AUTOENCODER_EXPORT data=synthetic data.root=DIR [frames=256]
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import torch

from drivesim.atomic import atomic_write_text

log = logging.getLogger(__name__)


class CalibrationError(ValueError):
    """Nothing (usable) to calibrate on (one line)."""


def latent_statistics(vae: Any, clips: list[torch.Tensor]) -> tuple[float, float, int]:
    """(mean, std, values) of the unscaled posterior means of uint8 clips (T, 3, H, W)."""
    from drivesim.training.adapter import frames_to_unit

    total, total_sq, count = 0.0, 0.0, 0
    with torch.no_grad():
        for frames in clips:
            x = frames_to_unit(frames[None])
            z = vae.encode_video(x) / vae.scaling_factor + vae.shift_factor  # undo the current scale
            total += float(z.double().sum())
            total_sq += float((z.double() ** 2).sum())
            count += z.numel()
    if count == 0:
        raise CalibrationError("no frames to calibrate the latent scale on")
    mean = total / count
    std = max(total_sq / count - mean * mean, 0.0) ** 0.5
    if not std > 0:
        raise CalibrationError("the latents have zero variance: cannot calibrate their scale")
    return mean, std, count


def autoencoder_folder(folder: Path) -> Path:
    """The diffusers VAE folder of `folder`: an autoencoder export (only: a later stage's autoencoder is
    its parent's, and rewriting it would invalidate every child), or a diffusers VAE / pipeline folder."""
    from drivesim.exports import MARKER, read_export
    from drivesim.models.vae import resolve_vae_folder

    if (folder / MARKER).is_file():
        return read_export(folder, stage="autoencoder").autoencoder_path()
    return Path(resolve_vae_folder(folder))


def calibrate(folder: Path, clips: list[torch.Tensor]) -> dict[str, float]:
    """Rewrite the diffusers VAE config of `folder` (see `autoencoder_folder`) with the fitted scale and
    shift; returns what was measured and written."""
    from drivesim.models.vae import VideoVAE

    vae_folder = autoencoder_folder(folder)
    vae = VideoVAE.from_pretrained(vae_folder)
    mean, std, count = latent_statistics(vae, clips)
    config_file = vae_folder / "config.json"
    config = json.loads(config_file.read_text())
    result = {"previous_scaling_factor": float(config.get("scaling_factor") or 1.0),
              "previous_shift_factor": float(config.get("shift_factor") or 0.0),
              "latent_mean": mean, "latent_std": std, "values": count,
              "scaling_factor": 1.0 / std, "shift_factor": mean}
    config["scaling_factor"], config["shift_factor"] = 1.0 / std, mean
    atomic_write_text(config_file, json.dumps(config, indent=2) + "\n")
    summary_file = vae_folder.parent / "summary.json"
    if summary_file.is_file():
        summary = json.loads(summary_file.read_text())
        summary["latent_calibration"] = result
        atomic_write_text(summary_file, json.dumps(summary, indent=2) + "\n")
    log.info("latent scale of %s: mean %.4f std %.4f over %d values -> scaling_factor %.5f, shift_factor %.5f",
             vae_folder, mean, std, count, 1.0 / std, mean)
    return result


def sample_clips(overrides: list[str], frames: int) -> list[torch.Tensor]:
    """About `frames` frames of the training split of the data the overrides name, in clips spread over it."""
    from drivesim.config import compose_command
    from drivesim.data.factory import build_dataset

    data_cfg = compose_command("train", overrides).data
    try:
        dataset: Any = build_dataset(data_cfg, split="train")
    except ValueError as exc:  # the data config or the dataset itself (one line from the loader)
        raise CalibrationError(str(exc)) from exc
    if len(dataset) == 0:
        raise CalibrationError(f"{data_cfg.root}: no training clips to calibrate on")
    first = dataset[0]
    wanted = max(1, frames // max(1, int(first.frames.shape[0])))
    step = max(1, len(dataset) // wanted)
    return [dataset[i].frames for i in range(0, len(dataset), step)][:wanted]


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0].startswith("-"):
        sys.stderr.write(__doc__.strip().splitlines()[-1].strip() + "\n")
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    folder, rest = Path(args[0]), args[1:]
    frames = 256
    overrides = []
    for item in rest:
        if item.startswith("frames="):
            frames = int(item.split("=", 1)[1])
        else:
            overrides.append(item)
    from drivesim.config import ConfigError
    from drivesim.exports import ExportError

    try:
        autoencoder_folder(folder)  # a wrong folder is refused before any data is read
        result = calibrate(folder, sample_clips(overrides, frames))
    except (CalibrationError, ExportError, ConfigError, FileNotFoundError) as exc:
        sys.stderr.write(f"drivesim calibrate: {' '.join(str(exc).split())}\n")
        return 2
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
