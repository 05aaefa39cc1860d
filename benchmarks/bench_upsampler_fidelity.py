"""Does the x4 upsampler follow its low-res input? Fidelity of an upsampler export on held-out clips (issue 12).

Validation clips of a high-res synthetic world (e.g. the recipe's `outputs/recipe/world_hr`, 512x1024)
are downscaled x`upscale` (kornia, antialiased, then uint8: what a rollout hands the upsampler) and
upsampled back by
- `bicubic`: plain pixel interpolation (the floor any upsampler must beat on detail, not on PSNR);
- `guess`: the upscaled guess itself, decoded (bilinear x4, encoded, decoded: the round trip the
  `upscaled` input carries; what a guess blend of strength 1 would return);
- `upsampler`: the export through `drivesim.pipelines.upsample.Upsampler` (the generation path), and
  `upsampler_wrong_input`: the same with another clip's low-res frames, so that a model which ignores its
  input scores as well as with the right one.
Each is scored against the real high-res frames: PSNR (dB), PSNR of its x4 downscale against the low-res
input (does it keep what it was given), the ratio of its mean |Laplacian| to the real frames' (detail:
1 is the real amount, bicubic is blurred), and the flow-warp error of consecutive frames (DIS flow,
drivesim.metrics.temporal) beside the real clips'. Also seconds per output frame.

    python benchmarks/bench_upsampler_fidelity.py --export outputs/recipe/upsampler/export \\
        --world outputs/recipe/world_hr [--clips 4] [--steps 10] [--init-strength 1.0] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from drivesim.atomic import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"
log = logging.getLogger("bench_upsampler_fidelity")
METHODS = ("bicubic", "guess", "upsampler", "upsampler_wrong_input")


def _unit(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (T, H, W, 3) or (T, 3, H, W) -> float (T, 3, H, W) in [0, 1]."""
    x = frames if frames.shape[1] == 3 else frames.permute(0, 3, 1, 2)
    return x.float() / 255.0


def _uint8(x: torch.Tensor) -> torch.Tensor:
    """float (T, 3, H, W) in [0, 1] -> uint8 (T, 3, H, W)."""
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a - b) ** 2).mean())
    return 10 * float(np.log10(1.0 / max(mse, 1e-12)))


def laplacian_energy(x: torch.Tensor) -> float:
    """Mean |Laplacian| of the grey frames (T, 3, H, W) in [0, 1]: how much fine detail there is."""
    import kornia

    grey = kornia.color.rgb_to_grayscale(x)
    return float(kornia.filters.laplacian(grey, 3).abs().mean())


def downscale(x: torch.Tensor, upscale: int) -> torch.Tensor:
    import kornia

    return kornia.geometry.transform.rescale(x, 1.0 / upscale, antialias=True).clamp(0, 1)


def scores(out: torch.Tensor, real: torch.Tensor, low: torch.Tensor, upscale: int, fps: float) -> dict[str, float]:
    """`out`, `real` (T, 3, H, W) in [0, 1]; `low` (T, 3, h, w) the input the method was given."""
    from drivesim.metrics.temporal import temporal_series

    return {"psnr": psnr(out, real), "psnr_low": psnr(downscale(out, upscale), low),
            "detail_ratio": laplacian_energy(out) / max(laplacian_energy(real), 1e-12),
            "warp": float(np.nanmean(temporal_series(_uint8(out), fps).warp_error))}


@torch.no_grad()
def measure(world: Path, export_path: Path, clips: int, steps: int, init_strength: float,
            seed: int = 0) -> dict[str, Any]:
    from drivesim.config import compose_command
    from drivesim.data.factory import build_dataset
    from drivesim.exports import read_export
    from drivesim.metrics.temporal import temporal_series
    from drivesim.pipelines.cascade_stages import load_upsampler
    from drivesim.pipelines.engine import SamplerSettings
    from drivesim.training.upsampler_module import encode_lowres

    export = read_export(export_path, stage="upsampler")
    sampler = SamplerSettings(steps=steps, init_strength=init_strength)
    up = load_upsampler(export, export.load_vae().eval(), sampler, "cpu", torch.float32, 8)
    fps = float(export.fps)
    data_cfg = compose_command("train", ["data=synthetic", f"data.root={world}", f"data.fps={fps:g}",
                                         f"data.frames={export.frames}", f"data.size={export.size}"]).data
    dataset = build_dataset(data_cfg, split="val")
    count = min(clips, len(dataset))
    if count < 2:
        raise SystemExit(f"{world}: {len(dataset)} validation clips of {export.frames} frames at {export.size}; "
                         "need at least 2 (one is the other's wrong input)")
    reals = [_unit(torch.as_tensor(dataset[i].frames)) for i in range(count)]
    lows = [_uint8(downscale(r, up.upscale)) for r in reals]
    rows: dict[str, list[dict[str, float]]] = {m: [] for m in METHODS}
    real_warp: list[float] = []
    upsampler_s = 0.0
    for i, (real, low) in enumerate(zip(reals, lows)):
        low_unit = _unit(low)
        frames = [f.permute(1, 2, 0).numpy() for f in low]  # uint8 (h, w, 3), as a rollout streams them
        wrong = [f.permute(1, 2, 0).numpy() for f in lows[(i + 1) % count]]
        bicubic = F.interpolate(low_unit, scale_factor=up.upscale, mode="bicubic", align_corners=False)
        guess_z = encode_lowres(up.vae, (low_unit * 2 - 1)[None], up.upscale, "upscaled")
        guess = (up.vae.decode_video(guess_z)[0].clamp(-1, 1) + 1) / 2
        start = time.perf_counter()
        ours = _unit(torch.from_numpy(np.stack(list(up.stream(frames, seed)))))
        upsampler_s += time.perf_counter() - start
        other = _unit(torch.from_numpy(np.stack(list(up.stream(wrong, seed)))))
        for name, out in (("bicubic", bicubic), ("guess", guess), ("upsampler", ours),
                          ("upsampler_wrong_input", other)):
            rows[name].append(scores(out, real, low_unit, up.upscale, fps))
        real_warp.append(float(np.nanmean(temporal_series(_uint8(real), fps).warp_error)))
        log.warning("clip %d/%d: upsampler PSNR %.2f dB (wrong input %.2f, bicubic %.2f)", i + 1, count,
                    rows["upsampler"][-1]["psnr"], rows["upsampler_wrong_input"][-1]["psnr"],
                    rows["bicubic"][-1]["psnr"])
    figures = {m: {k: round(float(np.mean([r[k] for r in rows[m]])), 4) for k in rows[m][0]} for m in METHODS}
    return {"figures": figures, "real_warp": round(float(np.mean(real_warp)), 4), "clips": count,
            "frames_per_clip": int(export.frames), "size": export.size, "fps": fps,
            "lowres_input": up.lowres_mode, "guess_blend": up.guess,
            "upsampler_s_per_output_frame": round(upsampler_s / (count * int(export.frames)), 3)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", type=Path, required=True, help="an upsampler export")
    parser.add_argument("--world", type=Path, required=True, help="a synthetic world at the export's size")
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--init-strength", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="result JSON (default benchmarks/results/"
                                                 "bench_upsampler_fidelity_<export folder>.json)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    summary = json.loads((args.export / "summary.json").read_text())
    result = {"export": str(args.export), "world": str(args.world), "steps": args.steps,
              "init_strength": args.init_strength, "threads": args.threads,
              "train_steps": summary.get("steps"), "train_wall_s": summary.get("wall_time_s"),
              **measure(args.world, args.export, args.clips, args.steps, args.init_strength),
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    out = args.out or RESULTS / f"bench_upsampler_fidelity_{args.export.parent.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    log.warning("%s", json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
