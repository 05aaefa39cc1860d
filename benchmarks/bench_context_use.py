"""Does a prediction / interpolation export use its given frames? Teacher-forced denoising error of the
frames it must make, with the given frames (clean, as context) over without them, per noise level.

A model that uses its context has a ratio well below 1 wherever the noisy frame alone says little; the
clean-latent error of "copy the nearest given frame" against "the data mean" says how much there is to
gain. Clips are the validation split of a synthetic world, encoded by the export's autoencoder.
`ratio_ls_blend` is the ratio the "with" output would reach blended with the output implied by the
given-frame guess (`context_guess`) at the least-squares strength per distance, fitted on these same
clips: what `model.conditioning.context_blend` can gain on top of the model (session 10).

    python benchmarks/bench_context_use.py --export drivesim/assets/demo_cascade/prediction --world outputs/recipe/world
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
log = logging.getLogger("bench_context_use")
TIMESTEPS = (100, 300, 500, 700, 900)


def given_mask(stage: str, frames: int, clips: int) -> torch.Tensor:
    """The mask generation uses: prediction the first two frames, interpolation every 4th."""
    index = torch.arange(frames)[None].expand(clips, frames)
    return ((index < 2) if stage == "temporal" else (index % 4 == 0)).float()


@torch.no_grad()
def val_clip_latents(export: Any, vae: Any, world: Path, clips: int) -> tuple[Any, torch.Tensor]:
    """`clips` clips spread over the val split of `world`, shaped as `export` was trained (fps, frames,
    size): the collated batch and its latents by `vae` (the export's autoencoder)."""
    from drivesim.config import compose_command
    from drivesim.data.factory import build_dataset
    from drivesim.training.adapter import frames_to_unit
    from drivesim.training.data import collate_positioned

    data = compose_command("train", ["data=synthetic", f"data.root={world}", f"data.fps={export.fps:g}",
                                     f"data.frames={export.frames}", f"data.size={list(export.size)}"]).data
    dataset = build_dataset(data, split="val")
    step = max(1, len(dataset) // clips)
    items = [dataset[i] for i in range(0, len(dataset), step)][:clips]
    batch = collate_positioned(list(enumerate(items)))
    return batch, vae.encode_video(frames_to_unit(batch.clips.frames)).float()


@torch.no_grad()
def measure(export_path: Path, world: Path, clips: int) -> dict[str, object]:
    from drivesim.diffusion.objectives import DiffusionObjective
    from drivesim.exports import read_export
    from drivesim.models.conditioning.context import context_guess, nearest_given
    from drivesim.models.conditioning.context_blend import implied_output
    from drivesim.training.adapter import batch_to_model_input

    export = read_export(export_path)
    if export.stage not in ("temporal", "interpolation"):
        raise SystemExit(f"{export_path}: a {export.stage!r} export; expected temporal or interpolation")
    unet = export.build_unet().eval().float()
    schedule = {k: v for k, v in export.scheduler_config().items() if not k.startswith("_") and k != "prediction_type"}
    objective = DiffusionObjective(schedule, str(export.prediction_type))
    vae = export.parent("autoencoder").load_vae()  # type: ignore[union-attr]
    batch, latents = val_clip_latents(export, vae, world, clips)
    b, t = latents.shape[:2]
    base = batch_to_model_input(batch.clips, tuple(export.size)).condition
    mask = given_mask(export.stage, t, b)
    todo = ~mask.bool()
    before, has_before, _, _ = nearest_given(latents, mask)
    copy_mse = float(((before - latents) ** 2).mean(dim=(2, 3, 4))[todo].mean())
    mean_mse = float(((latents - latents.mean(dim=(0, 1), keepdim=True)) ** 2).mean(dim=(2, 3, 4))[todo].mean())
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(0))
    guess, distance = context_guess(latents, mask)
    alphas = objective.scheduler.alphas_cumprod.float()
    rows = []
    for step_t in TIMESTEPS:
        steps = torch.full((b, t), step_t)
        noisy = objective.add_noise(latents, noise, steps)
        target = objective.target(latents, noise, steps)
        errors, outputs = {}, {}
        for name, m in (("with", mask), ("without", torch.zeros(b, t))):
            cond = replace(base, context_latents=latents * m[..., None, None, None], context_mask=m,
                           context_noise_level=torch.zeros(b))
            if export.stage == "interpolation" and unet.condition_encoders.frame.stage is not None:  # type: ignore[union-attr]
                cond = replace(cond, stage_id=torch.zeros(b, dtype=torch.long))
            out = unet(noisy, steps, cond)
            errors[name] = float(((out - target) ** 2).mean(dim=(2, 3, 4))[todo].mean())
            outputs[name] = out
        blended, strengths = ls_blend(outputs["with"], implied_output(noisy, guess, alphas[step_t].double(), objective.prediction_type),
                                      target, distance)
        ratio_blend = float(((blended - target) ** 2).mean(dim=(2, 3, 4))[todo].mean()) / errors["without"]
        rows.append({"t": step_t, "mse_with": errors["with"], "mse_without": errors["without"],
                     "ratio": errors["with"] / errors["without"], "ratio_ls_blend": ratio_blend,
                     "ls_strength_by_distance": strengths})
        log.warning("t=%d  with %.5f  without %.5f  ratio %.3f  least-squares blend %.3f", step_t, errors["with"],
                    errors["without"], rows[-1]["ratio"], ratio_blend)
    return {"export": str(export_path), "stage": export.stage, "world": str(world), "clips": b, "frames": t,
            "latent_std": float(latents.std()), "copy_nearest_given_x0_mse": copy_mse,
            "data_mean_x0_mse": mean_mse, "rows": rows}


def ls_blend(out: torch.Tensor, implied: torch.Tensor, target: torch.Tensor,
             distance: torch.Tensor) -> tuple[torch.Tensor, dict[int, float]]:
    """`out` blended towards `implied` with the least-squares strength per distance to a given frame."""
    blended, strengths = out.clone(), {}
    for d in range(1, int(distance.max()) + 1):
        at = distance == d
        diff = implied[at] - out[at]
        s = float((diff * (target[at] - out[at])).sum() / (diff**2).sum().clamp_min(1e-12))
        blended[at] = out[at] + s * diff
        strengths[d] = round(s, 4)
    return blended, strengths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", type=Path, required=True)
    parser.add_argument("--world", type=Path, required=True, help="a synthetic world (drivesim synth) with a val split")
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--name", default=None, help="result file suffix (default: the export's parent folder)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    torch.set_num_threads(1)
    result = measure(args.export, args.world, args.clips)
    result["date"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    RESULTS.mkdir(exist_ok=True)
    name = args.name or args.export.parent.name
    out = RESULTS / f"bench_context_use_{name}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    log.warning("%s", out)


if __name__ == "__main__":
    main()
