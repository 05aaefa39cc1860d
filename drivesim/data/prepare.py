"""Validate a dataset and build its index: `python -m drivesim.data.prepare nuscenes|videos --root DIR`.

Prints what it found and every problem (one line each, naming the file); exits 0 when the data is
usable as is, 1 when problems were found, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import av
import cv2

from drivesim.data.errors import DataError
from drivesim.data.nuscenes_db import (
    camera_streams,
    clip_starts,
    default_max_gap,
    open_nuscenes,
    table_problems,
)
from drivesim.data.sidecar import load_sidecar
from drivesim.data.splits import split_scenes
from drivesim.data.video_index import CACHE_NAME, index_folder

log = logging.getLogger("drivesim.data.prepare")


def check_nuscenes(root: Path, version: str, camera: str, frames: int, fps: float, decode: bool) -> list[str]:
    """Problems of a nuScenes-format dataset (empty list: usable)."""
    try:
        nusc = open_nuscenes(root, version)
        streams = camera_streams(nusc, camera)
    except DataError as exc:
        return [str(exc)]
    problems: list[str] = [str(p) for p in table_problems(nusc)]
    for record in nusc.map:
        if not (root / record["filename"]).is_file():
            problems.append(f"{root / record['filename']}: map image named by map.json is missing")
    # A sweep after its key frame is wrong unless that is the scene's last one (nothing follows it).
    sample_time = {s["token"]: s["timestamp"] if s["next"] else float("inf") for s in nusc.sample}
    images = sweeps = 0
    for stream in streams.values():
        for token in stream.tokens:
            sd = nusc.get("sample_data", token)
            path = root / sd["filename"]
            images += 1
            if not path.is_file():
                problems.append(f"{path}: image file is missing")
            elif decode and cv2.imread(str(path), cv2.IMREAD_COLOR) is None:
                problems.append(f"{path}: image does not decode")
            if not sd["is_key_frame"]:
                sweeps += 1
                if sample_time[sd["sample_token"]] < sd["timestamp"]:
                    problems.append(f"{root / version / 'sample_data.json'}: sweep {token} points at an earlier key "
                                    "frame (a sweep's sample_token must be the next key frame's)")
    log.info("%s %s: %d scenes with %s, %d frames (%d sweeps)", root, version, len(streams), camera, images, sweeps)
    missing = sum(s.missing_sweeps for s in streams.values())
    if missing:
        log.info("  %d sweep image(s) are missing and left out (a key-frames-only download?)", missing)
    for split in ("train", "val", None):
        try:
            names = split_scenes(version, list(streams), split)
        except ValueError:
            continue
        clips = sum(len(clip_starts(streams[n], frames, fps, frames / fps, default_max_gap(fps))) for n in names)
        log.info("  split %s: %d scenes, %d clips of %d frames at %g fps", split or "all", len(names), clips, frames, fps)
    return problems


def _decode_all(path: Path) -> str | None:
    try:
        with av.open(str(path)) as container:
            for _ in container.decode(video=0):
                pass
    except av.FFmpegError as exc:
        return f"{path}: corrupt: full decode failed ({exc})"
    return None


def check_videos(root: Path, frames: int, fps: float, decode: bool) -> list[str]:
    """Problems of a video folder (empty list: usable); builds or refreshes the index cache."""
    try:
        folder = index_folder(root)
    except DataError as exc:
        return [str(exc)]
    problems = [str(e) for e in folder.errors.values()]
    need = (frames - 1) / fps
    for video in folder.videos:
        path = root / video.path
        note = f"{video.codec} {video.width}x{video.height} {len(video.pts)} frames over {video.span:.2f}s"
        if video.rotation:
            note += f", rotated {video.rotation} deg"
        log.info("%s: %s", video.path, note)
        if video.span + 1e-9 < need:
            problems.append(f"{path}: shorter than one clip ({video.span:.3f}s, a clip needs {need:.3f}s)")
        try:
            load_sidecar(path)
        except DataError as exc:
            problems.append(str(exc))
        if decode and (err := _decode_all(path)):
            problems.append(err)
    log.info("%s: %d videos indexed (%s), %d unusable", root, len(folder.videos), root / CACHE_NAME, len(folder.errors))
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drivesim.data.prepare", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="kind", required=True)
    nus = sub.add_parser("nuscenes", help="a nuScenes-format dataset (real or synthetic)")
    nus.add_argument("--root", required=True, type=Path)
    nus.add_argument("--version", default="v1.0-trainval")
    nus.add_argument("--camera", default="CAM_FRONT")
    vid = sub.add_parser("videos", help="a folder of dash-cam videos")
    vid.add_argument("--root", required=True, type=Path)
    for p in (nus, vid):
        p.add_argument("--frames", type=int, default=4)
        p.add_argument("--fps", type=float, default=3.0)
        p.add_argument("--decode", action="store_true", help="decode every image / frame (slow, thorough)")
    args = parser.parse_args(argv)
    # The report goes to stdout through this module's logger only (the library's warnings keep
    # whatever logging the caller configured).
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        if args.kind == "nuscenes":
            problems = check_nuscenes(args.root, args.version, args.camera, args.frames, args.fps, args.decode)
        else:
            problems = check_videos(args.root, args.frames, args.fps, args.decode)
        for line in problems:
            log.error("PROBLEM %s", line)
        log.info("%s", f"{len(problems)} problem(s) found" if problems else "OK: no problems found")
    finally:
        log.removeHandler(handler)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
