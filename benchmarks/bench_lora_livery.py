"""DreamBooth/LoRA colour signature (issue 12): does the personalised model paint the livery subject in its box?

Phases (a killed or repeated run resumes: each phase writes a settings stamp, work/stamps/<phase>.json, the
JSON of the arguments it depends on and of the phases it reads, marked complete once it has finished; a
phase is skipped when its stamp is complete, its settings are the current ones and its outputs are there;
other settings, or outputs without a stamp, delete that phase's own folders under --work and redo it,
and so every phase that reads it; an interrupted phase of the same settings resumes in place):
1. subject: a synthetic world whose cars all wear a livery (`world.livery`, magenta_solid by default), day and
   clear, seeds 96001+ (disjoint from the recipe's 1000 and the held-out 90001-90008);
2. ae: the parent's autoencoder round-trips subject frames: the livery's colour signature (fraction of
   the subject's pixels of the livery's magenta hue) before and after, and off the subject (false hits);
3. lora: `drivesim train experiment=<scale>/lora model.pretrained=<image export> data.root=<subject>`;
4. generate: the same scenario (a lead car in the ego lane, another ahead on the left; day, clear) and
   seeds with and without `lora=`;
5. measure: the signature inside the cars' boxes (from conditions.jsonl) and outside them, and the
   flow-warp error (drivesim.metrics.temporal) of each video, unswapped vs swapped.

    python benchmarks/bench_lora_livery.py --scale tiny --work outputs/bench_lora_livery --steps 800
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from drivesim.atomic import atomic_write_text
from drivesim.config.diff import differing_keys
from drivesim.exports import folder_digest
from drivesim.synth.livery import primary_pixels

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("bench_lora_livery")
SIZES = {"micro": (64, 128), "tiny": (128, 256)}
DEFAULT_EXPORTS = {"tiny": (REPO / "drivesim/assets/demo_cascade/image", REPO / "drivesim/assets/demo_cascade/prediction")}

SCENARIO = """name: livery_lead
labels: {time_of_day: day, weather: clear, crowdedness: moderate}
ego:
  speed: [[0, 8.0]]
  yaw_rate: [[0, 0.0]]
agents:
  - {id: lead, class: car, size: [4.5, 1.9, 1.6], track: [[0, 11.0, 0.0, 0.0], [SECONDS, 13.0, 0.0, 0.0]]}
  - {id: left, class: car, size: [4.4, 1.85, 1.55], track: [[0, 20.0, 3.5, 0.0], [SECONDS, 17.0, 3.5, 0.0]]}
"""


livery_pixels = primary_pixels  # (H, W) bool: the livery's primary colour in uint8 RGB
# What each phase writes under --work (all that a changed setting deletes).
PHASE_OUTPUTS = {"subject": ("subject",), "ae": ("ae_check.json",), "lora": ("lora", "cache", "lora_timing.json"),
                 "gen_base": ("gen_base",), "gen_lora": ("gen_lora",)}


class Stamps:
    """work/stamps/<phase>.json: {"settings": ..., "complete": bool}, written atomically."""

    def __init__(self, work: Path) -> None:
        self.work = work

    def _file(self, phase: str) -> Path:
        return self.work / "stamps" / f"{phase}.json"

    def recorded(self, phase: str) -> dict[str, Any] | None:
        file = self._file(phase)
        return json.loads(file.read_text()) if file.is_file() else None  # type: ignore[no-any-return]

    def begin(self, phase: str, settings: dict[str, Any], outputs_there: bool) -> bool:
        """True when `phase` is done with `settings` (skip it); otherwise ready it to run (False)."""
        settings = json.loads(json.dumps(settings))
        old = self.recorded(phase)
        same = old is not None and old["settings"] == settings
        if same and old is not None and old["complete"] and outputs_there:
            return True
        if not same:  # other settings, or outputs of unknown settings: this phase's own outputs go
            if old is not None:
                log.warning("%s: settings changed (%s): redoing it", phase, ", ".join(differing_keys(old["settings"], settings)))
            for name in PHASE_OUTPUTS[phase]:
                path = self.work / name
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
        atomic_write_text(self._file(phase), json.dumps({"settings": settings, "complete": False}, indent=2))
        return False

    def finish(self, phase: str, settings: dict[str, Any]) -> None:
        atomic_write_text(self._file(phase), json.dumps({"settings": settings, "complete": True}, indent=2) + "\n")


def fingerprint(export: Path) -> str:
    """Which export is at `export`: a retrained export in the same folder differs (its weights' digest)."""
    return folder_digest(export)[:16]


def _cli(args: list[str]) -> None:
    from drivesim.cli import main

    log.warning("drivesim %s", " ".join(args))
    code = main(args)
    if code != 0:
        raise SystemExit(f"drivesim {args[0]} failed with exit code {code}")


def make_subject(work: Path, scale: str, scenes: int, seconds: float, seed: int, livery: str) -> Path:
    root = work / "subject"
    if (root / "synth" / "manifest.json").is_file():  # rendered (synth is atomic) by a run of these settings
        return root
    if root.exists():
        shutil.rmtree(root)
    h, w = SIZES[scale]
    _cli(["synth", f"out={root}", f"scenes={scenes}", f"seconds={seconds}", f"seed={seed}", f"camera.width={w}",
          f"camera.height={h}", f"world.livery={livery}", "world.livery_fraction=1.0", "world.time_of_day=day",
          "world.weather=clear", "world.crowdedness=crowded"])
    return root


def ae_check(subject: Path, image_export: Path, frames_per_scene: int) -> dict[str, float]:
    """The livery's signature on the subject's pixels (instance masks) before and after the AE round trip."""
    import torch

    from drivesim.exports import read_export
    from drivesim.synth.truth import load_scene_truth

    vae = read_export(image_export).load_vae().eval().float()
    on_gt = on_rec = off_gt = off_rec = 0
    subject_px = other_px = 0
    colour_err: list[float] = []
    for path in sorted((subject / "synth" / "truth").glob("*.json")):
        truth = load_scene_truth(subject, path.stem)
        wearers = np.array(json.loads(path.read_text())["livery"]["instances"], dtype=np.int64)
        picks = np.linspace(0, len(truth.image_paths) - 1, frames_per_scene).round().astype(int)
        images = np.stack([cv2.cvtColor(cv2.imread(str(truth.image_paths[k])), cv2.COLOR_BGR2RGB) for k in picks])
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float()[None] / 127.5 - 1.0
        with torch.no_grad():
            rec = vae.decode_video(vae.encode_video(x), x.shape[1])[0]
        rec_u8 = ((rec.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
        for k, img, out in zip(picks, images, rec_u8):
            subject_mask = np.isin(truth.load_mask(int(k)), wearers)
            gt, rc = livery_pixels(img), livery_pixels(out)
            on_gt += int((gt & subject_mask).sum())
            on_rec += int((rc & subject_mask).sum())
            off_gt += int((gt & ~subject_mask).sum())
            off_rec += int((rc & ~subject_mask).sum())
            subject_px += int(subject_mask.sum())
            other_px += int((~subject_mask).sum())
            if subject_mask.any():
                colour_err.append(float(np.abs(img[subject_mask].astype(float) - out[subject_mask]).mean() / 255))
    return {"subject_pixels": subject_px, "signature_gt": on_gt / max(subject_px, 1),
            "signature_ae": on_rec / max(subject_px, 1), "off_subject_gt": off_gt / max(other_px, 1),
            "off_subject_ae": off_rec / max(other_px, 1), "subject_mae_ae": float(np.mean(colour_err))}


def _checkpoint_step(path: Path) -> int:
    import torch

    if not path.is_file():
        return 0
    return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("global_step", 0))


def train_lora(work: Path, scale: str, image_export: Path, subject: Path, steps: int) -> tuple[Path, dict[str, Any]]:
    """The LoRA export and its timing: the training run's own wall time (export summary.json, this invocation,
    startup included) over the steps it trained (a resumed run starts from its last checkpoint's step)."""
    out = work / "lora"
    export = out / "export"
    resumed_from = _checkpoint_step(out / "checkpoints" / "last.ckpt")
    _cli(["train", f"experiment={'micro' if scale == 'micro' else 'demo'}/lora", f"model.pretrained={image_export}",
          "data=synthetic", f"data.root={subject}", f"out={out}", f"trainer.max_steps={steps}",
          f"trainer.checkpoint_every_n_steps={max(min(200, steps // 4), 1)}", "trainer.threads=1",
          "data.num_workers=0", f"cache_dir={work / 'cache'}", "trainer.log_every_n_steps=10"])
    summary = json.loads((export / "summary.json").read_text())
    trained = int(summary["steps"]) - resumed_from
    wall = float(summary["wall_time_s"])
    return export, {"s_per_step": wall / trained if trained > 0 else None, "steps": int(summary["steps"]),
                    "steps_timed": trained, "resumed_from_step": resumed_from, "wall_time_s": wall,
                    "source": "lora/export/summary.json wall_time_s (the last training invocation, startup "
                              "included) / the steps it trained"}


GEN_FILES = ("video.mp4", "conditions.jsonl", "run.json")  # what measure_video reads


def gen_folders(work: Path, name: str, seeds: list[int]) -> list[Path]:
    out = work / f"gen_{name}"
    return [out / f"seed_{s}" for s in seeds] if len(seeds) > 1 else [out]


def generated(folders: list[Path]) -> bool:
    return all((f / name).is_file() for f in folders for name in GEN_FILES)


def generate(work: Path, name: str, checkpoint: Path, seeds: list[int], seconds: float, steps: int,
             lora: Path | None) -> list[Path]:
    out = work / f"gen_{name}"
    folders = gen_folders(work, name, seeds)
    scenario = work / "scenario.yaml"
    scenario.write_text(SCENARIO.replace("SECONDS", f"{seconds:g}"))
    args = ["generate", f"checkpoint={checkpoint}", f"out={out}", f"scenario.path={scenario}", f"seconds={seconds}",
            f"seeds=[{','.join(str(s) for s in seeds)}]", f"sampler.steps={steps}"]
    _cli(args + ([f"lora={lora}"] if lora is not None else []))
    return folders


def _frames(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])])


def box_signature(frames: np.ndarray, rows: list[dict[str, Any]]) -> dict[str, float]:
    """The livery's signature inside the frames' boxes (conditions.jsonl rows, xyxy normalised) and outside."""
    h, w = frames.shape[1:3]
    inside = inside_px = outside = outside_px = 0
    for frame, row in zip(frames, rows):
        hits = livery_pixels(frame)
        boxes = np.zeros((h, w), dtype=bool)
        for box in row["boxes"]:
            x0, y0, x1, y1 = box["xyxy"]
            boxes[int(np.floor(y0 * h)):int(np.ceil(y1 * h)), int(np.floor(x0 * w)):int(np.ceil(x1 * w))] = True
        inside += int((hits & boxes).sum())
        inside_px += int(boxes.sum())
        outside += int((hits & ~boxes).sum())
        outside_px += int((~boxes).sum())
    return {"signature_in_boxes": inside / max(inside_px, 1), "signature_outside": outside / max(outside_px, 1)}


def measure_video(folder: Path) -> dict[str, float]:
    import torch

    from drivesim.metrics.temporal import temporal_series

    frames = _frames(folder / "video.mp4")
    rows = [json.loads(line) for line in (folder / "conditions.jsonl").read_text().splitlines() if line.strip()]
    run = json.loads((folder / "run.json").read_text())
    warp = temporal_series(torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous(), float(run["fps"])).warp_error
    return {**box_signature(frames, rows), "warp_error": float(np.nanmean(warp)), "frames": int(len(frames))}


def summarise(per_video: list[dict[str, float]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("signature_in_boxes", "signature_outside", "warp_error"):
        values = np.array([v[key] for v in per_video], dtype=float)
        out[key] = {"mean": round(float(values.mean()), 5), "std": round(float(values.std()), 5),
                    "per_seed": [round(float(v), 5) for v in values]}
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    stamps = Stamps(work)
    image_export = Path(args.image_export or DEFAULT_EXPORTS[args.scale][0])
    checkpoint = Path(args.checkpoint or DEFAULT_EXPORTS[args.scale][1])
    subject = work / "subject"
    sub = {"scale": args.scale, "scenes": args.scenes, "seconds": args.seconds, "seed": args.subject_seed,
           "livery": args.livery}
    if not stamps.begin("subject", sub, (subject / "synth" / "manifest.json").is_file()):
        make_subject(work, args.scale, args.scenes, args.seconds, args.subject_seed, args.livery)
        stamps.finish("subject", sub)
    parent = {"image_export": str(image_export), "image_export_id": fingerprint(image_export)}
    ae_file = work / "ae_check.json"
    ae_settings = {**parent, "ae_frames": args.ae_frames, "subject": sub}
    if not stamps.begin("ae", ae_settings, ae_file.is_file()):
        atomic_write_text(ae_file, json.dumps(ae_check(subject, image_export, args.ae_frames), indent=2) + "\n")
        stamps.finish("ae", ae_settings)
    ae = json.loads(ae_file.read_text())
    ae["reconstructs_livery"] = ae["signature_ae"] >= 0.5 * ae["signature_gt"]
    if not ae["reconstructs_livery"]:
        log.warning("the autoencoder loses the livery (signature %.3f -> %.3f on the subject's pixels): the "
                    "decoded videos cannot show it, whatever the LoRA learns", ae["signature_gt"], ae["signature_ae"])
    lora = work / "lora" / "export"
    timing_file = work / "lora_timing.json"
    lora_settings = {**parent, "scale": args.scale, "steps": args.steps, "subject": sub}
    if not stamps.begin("lora", lora_settings, (lora / "drivesim_export.json").is_file() and timing_file.is_file()):
        lora, timing = train_lora(work, args.scale, image_export, subject, args.steps)
        atomic_write_text(timing_file, json.dumps(timing, indent=2) + "\n")
        stamps.finish("lora", lora_settings)
    timing = json.loads(timing_file.read_text())
    seeds = list(range(args.gen_seeds))
    gen = {"checkpoint": str(checkpoint), "checkpoint_id": fingerprint(checkpoint), "seeds": seeds,
           "seconds": args.gen_seconds, "sampler_steps": args.sampler_steps, "scenario": SCENARIO}
    figures = {}
    for name, adapter in (("base", None), ("lora", lora)):
        settings = {**gen, "lora": lora_settings} if adapter is not None else gen
        if not stamps.begin(f"gen_{name}", settings, generated(gen_folders(work, name, seeds))):
            generate(work, name, checkpoint, seeds, args.gen_seconds, args.sampler_steps, adapter)
            stamps.finish(f"gen_{name}", settings)
        figures[name] = summarise([measure_video(f) for f in gen_folders(work, name, seeds)])
    return {"scale": args.scale, "livery": args.livery, "image_export": str(image_export),
            "checkpoint": str(checkpoint), "subject": {"scenes": args.scenes, "seconds": args.seconds,
                                                       "seed": args.subject_seed},
            "lora_steps": args.steps, "lora_s_per_step_incl_startup": timing["s_per_step"], "lora_timing": timing,
            "threads": 1,
            "generation": {"seeds": seeds, "seconds": args.gen_seconds, "sampler_steps": args.sampler_steps},
            "autoencoder_check": ae, "figures": figures,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def print_table(result: dict[str, Any]) -> None:
    ae = result["autoencoder_check"]
    print(f"autoencoder: livery signature on the subject {ae['signature_gt']:.3f} -> {ae['signature_ae']:.3f} after "
          f"the round trip (off the subject {ae['off_subject_gt']:.4f} -> {ae['off_subject_ae']:.4f})")
    print(f"{'model':<8}{'signature in boxes':>22}{'outside boxes':>18}{'warp error':>18}")
    for name, f in result["figures"].items():
        print(f"{name:<8}{f['signature_in_boxes']['mean']:>14.4f} +- {f['signature_in_boxes']['std']:.4f}"
              f"{f['signature_outside']['mean']:>18.4f}{f['warp_error']['mean']:>11.4f} +- {f['warp_error']['std']:.4f}")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--work", default="outputs/bench_lora_livery", help="resumable outputs of every phase")
    parser.add_argument("--image-export", help="the LoRA's parent (default at tiny: the shipped demo image export)")
    parser.add_argument("--checkpoint", help="prediction export to generate with (default at tiny: the shipped one)")
    parser.add_argument("--livery", default="magenta_solid")
    parser.add_argument("--scenes", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--subject-seed", type=int, default=96001)
    parser.add_argument("--ae-frames", type=int, default=8, help="frames per subject scene in the AE check")
    parser.add_argument("--steps", type=int, default=800, help="LoRA training steps")
    parser.add_argument("--gen-seeds", type=int, default=8)
    parser.add_argument("--gen-seconds", type=float, default=4.0)
    parser.add_argument("--sampler-steps", type=int, default=20)
    parser.add_argument("--out", help="result JSON (default benchmarks/results/bench_lora_livery_<scale>.json)")
    args = parser.parse_args(argv)
    if args.scale not in DEFAULT_EXPORTS and not (args.image_export and args.checkpoint):
        parser.error(f"--scale {args.scale} needs --image-export and --checkpoint")
    return args


def main(argv: list[str] | None = None) -> Path:
    args = parse(argv)
    logging.basicConfig(level=logging.WARNING)
    import torch

    torch.set_num_threads(1)
    result = run(args)
    out = Path(args.out) if args.out else RESULTS / f"bench_lora_livery_{args.scale}.json"
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    print_table(result)
    print(out)
    return out


if __name__ == "__main__":
    main()
