"""Flicker of the temporal VAE decoder against the image decoder on the same latents (issue 12).

A small synthetic world is rendered, an autoencoder trained, then the `decoder` stage fine-tunes its
temporal decoder; both decoders then decode the same latents of validation clips:
- static content: one frame repeated T times, latents drawn from the posterior per frame (the
  frame-to-frame latent jitter a sampler leaves): mean absolute difference of consecutive decoded
  frames, in [0, 1] units (0 for the ground truth);
- moving clips (posterior means): flow-warp error of consecutive decoded frames
  (drivesim.metrics.temporal, DIS flow) beside the ground truth's, and PSNR against the ground truth.

    python benchmarks/bench_decoder_flicker.py --model micro --ae-steps 300 --decoder-steps 200 [--disc-weight 0.1]
    # or measure a decoder export already trained (e.g. the recipe's) on its world's validation clips:
    python benchmarks/bench_decoder_flicker.py --export outputs/recipe/decoder/export --world outputs/recipe/world
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"
log = logging.getLogger("bench_decoder_flicker")


def _train(base: Path, model: str, ae_steps: int, decoder_steps: int, size: tuple[int, int],
           disc_weight: float, sample_latents: bool) -> tuple[Path, Path, float]:
    from drivesim.cli import main

    world = base / "world"
    main(["synth", f"out={world}", "scenes=3", "seconds=8", "seed=7", f"camera.width={size[1]}",
          f"camera.height={size[0]}"])
    common = [f"model={model}", "data=synthetic", f"data.root={world}", "data.fps=6", f"cache_dir={base / 'cache'}",
              "trainer.threads=1", "trainer.log_every_n_steps=50", "data.num_workers=0"]
    assert main(["train", "stage=autoencoder", f"out={base / 'ae'}", f"trainer.max_steps={ae_steps}",
                 "trainer.lr=1e-3", *common]) == 0
    start = time.perf_counter()
    assert main(["train", "stage=decoder", f"out={base / 'dec'}", f"trainer.max_steps={decoder_steps}",
                 f"model.vae={base / 'ae' / 'export'}", "trainer.lr=1e-3", f"stage.disc_weight={disc_weight}",
                 "stage.disc_start=0", f"stage.sample_latents={sample_latents}", *common]) == 0
    return world, base / "dec" / "export", time.perf_counter() - start


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


@torch.no_grad()
def measure(world: Path, decoder_export: Path, clips: int, fps: float = 6.0) -> dict[str, float]:
    from drivesim.config import compose_command
    from drivesim.data.factory import build_dataset
    from drivesim.exports import read_export
    from drivesim.metrics.temporal import temporal_series
    from drivesim.training.adapter import frames_to_unit

    export = read_export(decoder_export, stage="decoder")
    temporal = export.load_vae().eval()
    image = read_export(export.parent_path("autoencoder")).load_vae().eval()  # type: ignore[arg-type]
    data_cfg = compose_command("train", ["data=synthetic", f"data.root={world}", f"data.fps={fps:g}",
                                         f"data.frames={export.frames}", f"data.size={export.size}"]).data
    dataset = build_dataset(data_cfg, split="val")
    gen = torch.Generator().manual_seed(0)
    rows: dict[str, list[float]] = {k: [] for k in ("static_mad_image", "static_mad_temporal", "warp_gt",
                                                    "warp_image", "warp_temporal", "psnr_image", "psnr_temporal")}
    for i in range(min(clips, len(dataset))):
        clip = dataset[i]
        x = frames_to_unit(torch.as_tensor(clip.frames))[None]  # (1, T, 3, H, W)
        t = x.shape[1]
        static = x[:, :1].expand(1, t, *x.shape[2:]).contiguous()
        z_static = image.encode_video(static, sample=True, generator=gen)
        z = image.encode_video(x)
        for name, vae in (("image", image), ("temporal", temporal)):
            s = (vae.decode_video(z_static, t).clamp(-1, 1) + 1) / 2
            rows[f"static_mad_{name}"].append(float((s[:, 1:] - s[:, :-1]).abs().mean()))
            rec = vae.decode_video(z, t)
            rows[f"warp_{name}"].append(float(np.nanmean(temporal_series(_to_uint8(rec[0]), fps).warp_error)))
            mse = float((((rec.clamp(-1, 1) - x) / 2) ** 2).mean())
            rows[f"psnr_{name}"].append(10 * np.log10(1.0 / max(mse, 1e-10)))
        rows["warp_gt"].append(float(np.nanmean(temporal_series(torch.as_tensor(clip.frames), fps).warp_error)))
    return {k: round(float(np.mean(v)), 5) for k, v in rows.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="micro")
    parser.add_argument("--ae-steps", type=int, default=200)
    parser.add_argument("--decoder-steps", type=int, default=150)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--disc-weight", type=float, default=0.0)
    parser.add_argument("--mean-latents", action="store_true", help="train on posterior means, not draws")
    parser.add_argument("--export", type=Path, help="a trained decoder export to measure (no training)")
    parser.add_argument("--world", type=Path, help="with --export: the synthetic world of its validation clips")
    parser.add_argument("--fps", type=float, default=6.0, help="with --export: clip frame rate")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    if args.export is not None:
        if args.world is None:
            parser.error("--export needs --world")
        from drivesim.exports import read_export

        export = read_export(args.export, stage="decoder")
        summary = json.loads((args.export / "summary.json").read_text())
        result = {"export": str(args.export), "world": str(args.world), "fps": args.fps,
                  "decoder_steps": summary.get("steps"), "decoder_train_s": summary.get("wall_time_s"),
                  "size": export.size, "frames": export.frames, "clips": args.clips,
                  "figures": measure(args.world, args.export, args.clips, args.fps),
                  "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        RESULTS.mkdir(exist_ok=True)
        out = RESULTS / f"bench_decoder_flicker_{args.export.parent.name}.json"
        out.write_text(json.dumps(result, indent=2) + "\n")
        log.warning("%s", json.dumps(result, indent=2))
        return
    size = (64, 128) if args.model == "micro" else (128, 256)
    with tempfile.TemporaryDirectory() as tmp:
        world, export, decoder_s = _train(Path(tmp), args.model, args.ae_steps, args.decoder_steps, size,
                                          args.disc_weight, not args.mean_latents)
        figures = measure(world, export, args.clips)
    result = {"model": args.model, "ae_steps": args.ae_steps, "decoder_steps": args.decoder_steps,
              "disc_weight": args.disc_weight, "sample_latents": not args.mean_latents,
              "decoder_train_s": round(decoder_s, 1), "threads": 1, "figures": figures,
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    RESULTS.mkdir(exist_ok=True)
    latents = "mean" if args.mean_latents else "sampled"
    out = RESULTS / f"bench_decoder_flicker_{args.model}_disc{args.disc_weight:g}_{latents}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    log.warning("%s", json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
