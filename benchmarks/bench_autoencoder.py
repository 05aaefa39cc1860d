"""An autoencoder export on full frames: PSNR per time of day, decode cost, and a picture to look at.

DESIGN.md section 6: the autoencoder bounds the latent model's quality, so measure it on full frames,
night included, before any diffusion stage trains on its latents. Renders a held-out synthetic world
(seeds of synth-bench-v1 by default), reconstructs every `--every`-th frame through the export, and
writes PSNR by time of day, decode seconds per frame, colour fidelity (flat blocks of the base world's
car colours and of the livery's magenta, 8 to 32 px tall, pasted into held-out frames: the hue error of
their reconstruction and how much saturation survives) and `autoencoder_<name>.png` (originals above
reconstructions).

    python benchmarks/bench_autoencoder.py outputs/recipe/autoencoder/export
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from drivesim.cli import main as cli
from drivesim.data import NuScenesClips
from drivesim.data.labels import VOCAB
from drivesim.exports import read_export
from drivesim.training.adapter import frames_to_unit, unit_to_frames

RESULTS = Path(__file__).resolve().parent / "results"
#: Block colours: base-world car paints (drivesim/synth/agents.py) and the livery's magenta (never in the base world).
BLOCK_COLOURS = {"red": (204, 25, 25), "blue": (25, 51, 178), "yellow": (230, 191, 25), "green": (51, 128, 64),
                 "magenta": (242, 13, 191)}
BLOCK_SIZES = (8, 16, 32)


def _hue_sat(rgb: np.ndarray) -> tuple[float, float]:
    hsv = cv2.cvtColor(np.clip(rgb, 0, 255).astype(np.uint8).reshape(1, 1, 3), cv2.COLOR_RGB2HSV)[0, 0]
    return float(hsv[0]) * 2.0, float(hsv[1]) / 255.0


def colour_fidelity(vae: Any, frame: torch.Tensor) -> dict[str, dict[str, Any]]:
    """Per colour and block height: hue error (degrees) and saturation kept (reconstructed / original) of a
    flat (size x 2 size) block pasted into `frame` (uint8 (3, H, W)), read from its central half."""
    out: dict[str, dict[str, Any]] = {}
    for name, colour in BLOCK_COLOURS.items():
        for size in BLOCK_SIZES:
            image = frame.clone()
            y0, x0 = frame.shape[1] // 2 - size // 2, frame.shape[2] // 2 - size
            image[:, y0:y0 + size, x0:x0 + 2 * size] = torch.tensor(colour, dtype=torch.uint8)[:, None, None]
            y = vae.decode_video(vae.encode_video(frames_to_unit(image)[None, None]))[0, 0]
            got = unit_to_frames(y).permute(1, 2, 0).numpy().astype(np.float64)
            got = got[y0 + size // 4:y0 + 3 * size // 4, x0 + size // 2:x0 + 3 * size // 2].mean((0, 1))
            (h0, s0), (h1, s1) = _hue_sat(np.array(colour, np.float64)), _hue_sat(got)
            out[f"{name}_{size}px"] = {"hue_error_deg": round(min(abs(h0 - h1), 360 - abs(h0 - h1)), 1),
                                       "saturation_kept": round(s1 / s0, 3),
                                       "decoded_rgb": [int(round(v)) for v in got]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export")
    parser.add_argument("--seed", type=int, default=90001)
    parser.add_argument("--scenes", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--name", default="recipe")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    exp = read_export(args.export, stage="autoencoder")
    vae = exp.load_vae()
    h, w = exp.size
    with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
        world = Path(tmp) / "world"
        cli(["synth", f"out={world}", f"scenes={args.scenes}", f"seconds={args.seconds}", f"seed={args.seed}",
             f"camera.width={2 * w}", f"camera.height={2 * h}"])
        clips = NuScenesClips(world, "v1.0-synth", frames=4, fps=1.0, size=(h, w), split=None)
        psnr: dict[str, list[float]] = defaultdict(list)
        decode_s, decoded = 0.0, 0
        pictures: list[tuple[torch.Tensor, torch.Tensor]] = []
        for i in range(len(clips)):
            clip = clips[i]
            assert clip is not None  # split=None and the default on_error: every clip loads or raises
            x = frames_to_unit(clip.frames)[None]
            z = vae.encode_video(x)
            start = time.perf_counter()
            y = vae.decode_video(z)
            decode_s += time.perf_counter() - start
            decoded += z.shape[1]
            mse = ((y.clamp(-1, 1) - x) ** 2).mean(dim=(0, 2, 3, 4)) / 4
            day = VOCAB["time_of_day"][clip.labels.time_of_day]
            psnr[day] += (10 * torch.log10(1 / mse.clamp_min(1e-10))).tolist()
            if len(pictures) < 6:
                pictures.append((clip.frames[0], unit_to_frames(y[0, 0])))
        first = clips[0]
        assert first is not None
        colours = colour_fidelity(vae, first.frames[0])
    row = {"export": str(exp.path), "frames": decoded, "size": [h, w],
           "psnr_db": {k: round(float(np.mean(v)), 2) for k, v in psnr.items()},
           "psnr_db_all": round(float(np.mean([p for v in psnr.values() for p in v])), 2),
           "decode_s_per_frame": round(decode_s / max(1, decoded), 4), "threads": args.threads,
           "colour_fidelity": colours,
           "colour_summary": {name: {"hue_error_deg_32px": colours[f"{name}_32px"]["hue_error_deg"],
                                     "saturation_kept_32px": colours[f"{name}_32px"]["saturation_kept"]}
                              for name in BLOCK_COLOURS},
           "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    print(json.dumps(row, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"autoencoder_{args.name}.json").write_text(json.dumps(row, indent=2) + "\n")
    top = np.concatenate([a.permute(1, 2, 0).numpy() for a, _ in pictures], axis=1)
    bottom = np.concatenate([b.permute(1, 2, 0).numpy() for _, b in pictures], axis=1)
    cv2.imwrite(str(RESULTS / f"autoencoder_{args.name}.png"), cv2.cvtColor(np.concatenate([top, bottom]), cv2.COLOR_RGB2BGR))


if __name__ == "__main__":
    main()
