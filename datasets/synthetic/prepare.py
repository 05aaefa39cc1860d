"""Render the synthetic driving world and check it with the unmodified nuScenes devkit.

    python datasets/synthetic/prepare.py --out outputs/synth --scenes 4 --seconds 20 --seed 0
    python datasets/synthetic/prepare.py --check outputs/synth      # only check an existing folder

The check loads DIR with `nuscenes.nuscenes.NuScenes`, walks every scene's sample and sample_data
chains, opens every image and instance mask, and loads each scene's ground-truth sidecar; it exits 1
with a message naming the first problem it finds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2

from drivesim.config.synth import CameraConfig, SynthConfig
from drivesim.synth import render_dataset
from drivesim.synth.truth import load_scene_truth


def check(root: Path, version: str) -> list[str]:
    from nuscenes.nuscenes import NuScenes

    problems: list[str] = []
    nusc = NuScenes(version=version, dataroot=str(root), verbose=False)
    for scene in nusc.scene:
        truth = load_scene_truth(root, scene["name"])
        token, samples = scene["first_sample_token"], 0
        while token:
            samples += 1
            token = nusc.get("sample", token)["next"]
        if samples != scene["nbr_samples"]:
            problems.append(f"{scene['name']}: {samples} samples in the chain, nbr_samples={scene['nbr_samples']}")
        first = nusc.get("sample", scene["first_sample_token"])["data"]["CAM_FRONT"]
        token, frames = first, []
        while token:
            sd = nusc.get("sample_data", token)
            frames.append(sd)
            token = sd["next"]
        if [sd["token"] for sd in frames] != truth.sample_data_tokens:
            problems.append(f"{scene['name']}: sample_data chain and truth sidecar disagree")
        for k, sd in enumerate(frames):
            image = cv2.imread(str(root / sd["filename"]))
            if image is None or image.shape[:2] != (sd["height"], sd["width"]):
                problems.append(f"{sd['filename']}: missing or not {sd['height']}x{sd['width']}")
            if k < len(truth.mask_paths) and truth.load_mask(k).shape != (sd["height"], sd["width"]):
                problems.append(f"{truth.mask_paths[k]}: wrong size")
        print(f"{scene['name']}: {scene['description']}; {samples} samples, {len(frames)} frames, "
              f"{sum(len(nusc.get('sample', s['sample_token'])['anns']) for s in frames if s['is_key_frame'])} "
              f"annotations")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="outputs/synth")
    parser.add_argument("--check", metavar="DIR", help="check an existing dataset instead of rendering one")
    parser.add_argument("--scenes", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--version", default="v1.0-synth")
    args = parser.parse_args()
    if args.check:
        root = Path(args.check)
    else:
        root = render_dataset(SynthConfig(out=args.out, scenes=args.scenes, seconds=args.seconds, seed=args.seed,
                                          version=args.version, preview=True,
                                          camera=CameraConfig(width=args.width, height=args.height)))
    problems = check(root, args.version)
    for p in problems:
        print(f"problem: {p}", file=sys.stderr)
    print(f"{root}: {'OK' if not problems else f'{len(problems)} problems'}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
