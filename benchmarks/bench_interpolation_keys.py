"""Does the interpolation model beat the blend of its keys? Sample the in-between frames of clips from
their true key frames and compare them with the truth and with the plain latent blend of the keys.

Per sampler setting (DDIM steps, init_strength, noise_correlation): the clean-latent error of the frames
between the keys by position, and the mean |grey-level difference| of consecutive decoded frames split
into "at a key" (a key and its neighbours) and "between" (two in-between frames). The truth moves about
evenly; a model whose in-between frames do not continue their keys shows a pop at every key (session 15:
the reason the demo runs the model as a light refinement of the blend). Clips: the val split of a
synthetic world, encoded by the export's autoencoder; the keys every `interpolation_factor`-th frame,
conditioned as generation conditions them (context noise at the training mean, the export's stage id).

    python benchmarks/bench_interpolation_keys.py --export drivesim/assets/demo_cascade/interpolation \\
        --world outputs/recipe/world --setting 4,1.0,0 --setting 4,0.75,0.95 --setting 20,0.05,0.95
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parent / "results"
log = logging.getLogger("bench_interpolation_keys")


def parse_setting(text: str) -> tuple[int, float, float]:
    """"steps,init_strength,noise_correlation" -> its values (a one-line error otherwise)."""
    try:
        steps, strength, correlation = text.split(",")
        return int(steps), float(strength), float(correlation)
    except ValueError:
        raise SystemExit(f"--setting {text!r}: expected steps,init_strength,noise_correlation (e.g. 4,0.75,0.95)") from None


def frame_steps(grey: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """Mean |difference| of consecutive frames (B, T, H, W): pairs touching a key vs pairs between keys."""
    diff = (grey[:, 1:] - grey[:, :-1]).abs().mean(dim=(2, 3))  # (B, T-1)
    touches = (mask[:, 1:] + mask[:, :-1]) > 0
    return {"at_key": float(diff[touches].mean()), "between": float(diff[~touches].mean())}


@torch.no_grad()
def measure(export_path: Path, world: Path, clips: int, settings: list[tuple[int, float, float]],
            seed: int) -> dict[str, Any]:
    from bench_context_use import val_clip_latents

    from drivesim.diffusion.cfg import GuidedDenoiser
    from drivesim.diffusion.sampling import (
        GivenFrames,
        context_init,
        frame_correlated_noise,
        make_scheduler,
        sample_video,
    )
    from drivesim.exports import read_export
    from drivesim.pipelines.conditions import Supports, with_context
    from drivesim.pipelines.loading import context_noise_mean, trained_stage_ids
    from drivesim.training.adapter import batch_to_model_input

    export = read_export(export_path)
    if export.stage != "interpolation":
        raise SystemExit(f"{export_path}: a {export.stage!r} export; expected interpolation")
    unet = export.build_unet().eval().float()
    vae = export.parent("autoencoder").load_vae()  # type: ignore[union-attr]
    schedule = export.scheduler_config()
    batch, latents = val_clip_latents(export, vae, world, clips)
    b, t = latents.shape[:2]
    factor = int((export.config().get("stage") or {}).get("interpolation_factor", 4))
    mask = (torch.arange(t) % factor == 0).float()[None].expand(b, t).contiguous()
    given = GivenFrames(latents * mask[..., None, None, None], mask)
    supports = Supports.of(unet)
    cond = with_context(batch_to_model_input(batch.clips, tuple(export.size)).condition, given.latents, mask,
                        supports, context_noise_mean(export), torch.Generator().manual_seed(seed + 1))
    if supports.stage:
        cond = replace(cond, stage_id=torch.full((b,), trained_stage_ids(export)[0], dtype=torch.long))

    def grey(z: torch.Tensor) -> torch.Tensor:
        return ((vae.decode_video(z, 8).clamp(-1, 1) + 1) * 127.5).mean(dim=2)

    def scored(z: torch.Tensor) -> dict[str, Any]:
        err = ((z - latents) ** 2).mean(dim=(0, 2, 3, 4))
        todo = ~mask[0].bool()
        return {"latent_mse_by_position": [round(float(e), 5) for e in err],
                "latent_mse": float(err[todo].mean()), "grey_step": frame_steps(grey(z), mask)}

    rows: list[dict[str, Any]] = [{"name": "truth", **scored(latents)},
                                  {"name": "blend of the keys", **scored(context_init(given))}]
    for steps, strength, correlation in settings:
        gen = torch.Generator().manual_seed(seed)
        noise = frame_correlated_noise(torch.randn(latents.shape, generator=gen), correlation, gen)
        scheduler = make_scheduler("ddim", schedule, "trailing", 0.0)
        denoiser = GuidedDenoiser(lambda x, s, c: unet(x, s, c), {}, "composed", None, 0)
        init = context_init(given) if strength < 1.0 else None
        out = sample_video(denoiser, scheduler, noise, cond, steps, given, gen, init, strength)
        rows.append({"name": f"model: {steps} steps, init_strength {strength}, noise_correlation {correlation}",
                     "steps": steps, "init_strength": strength, "noise_correlation": correlation, **scored(out)})
    for row in rows:
        log.warning("%-62s latent mse %.4f  |frame step| at a key %.2f, between %.2f", row["name"], row["latent_mse"],
                    row["grey_step"]["at_key"], row["grey_step"]["between"])
    return {"export": str(export_path), "world": str(world), "clips": b, "frames": t, "seed": seed, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", type=Path, required=True)
    parser.add_argument("--world", type=Path, required=True, help="a synthetic world (drivesim synth) with a val split")
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--setting", action="append", default=[], type=parse_setting,
                        help="steps,init_strength,noise_correlation (repeatable)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default=None, help="result file suffix (default: the export's parent folder)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    torch.set_num_threads(2)
    settings = args.setting or [(4, 1.0, 0.0), (4, 0.75, 0.95), (20, 0.05, 0.95)]
    result = measure(args.export, args.world, args.clips, settings, args.seed)
    result["date"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"bench_interpolation_keys_{args.name or args.export.parent.name}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    log.warning("%s", out)


if __name__ == "__main__":
    main()
