"""`drivesim evaluate` and its Python entry point `evaluate_folder`.

    report = evaluate_folder("outputs/generate/run", protocol="synth-bench-v1", metrics=["temporal"])
    report["metrics"]["temporal_warp"]["value"], report["metrics"]["temporal_warp"]["n"]

The real side is `real=<folder>`, `data=<dataset config>`, or, for a synthetic protocol given
neither, its held-out seeds (rendered once into the cache). The report is
`{"protocol": {...}, "metrics": {name: {"value", "n", ...}}, "unavailable": {name: reason}}`.
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from drivesim.config.protocol import ProtocolConfig
from drivesim.data.errors import DataError
from drivesim.metrics.extractors import MissingExtractorError
from drivesim.metrics.protocol import as_protocol, protocol_record
from drivesim.metrics.real import real_from_data, real_from_folder, real_from_synth_benchmark
from drivesim.metrics.report import write_report
from drivesim.metrics.suite import SuiteOptions, Unavailable, first_counted, run_suite
from drivesim.metrics.videos import VideoSeq, find_videos, load_video
from drivesim.progress import progress

log = logging.getLogger(__name__)


def load_generated(root: str | Path, protocol: ProtocolConfig) -> tuple[VideoSeq, dict]:
    """The generated videos, read on demand; one pass here checks them all and counts what they hold."""
    paths = find_videos(root)
    size = (int(protocol.size[0]), int(protocol.size[1]))
    seq = VideoSeq([functools.partial(load_video, p, size, protocol.fps) for p in paths])
    frames, counted, conditioned, rates, off_rate = 0, 0, 0, set(), []
    for v in progress(seq, "reading generated videos", total=len(seq)):
        frames += int(v.frames.shape[0])
        counted += max(0, int(v.frames.shape[0]) - first_counted(protocol))
        conditioned += v.conditions is not None
        rates.add(round(v.fps, 4))
        if abs(v.fps - protocol.fps) > 1e-3:
            off_rate.append(v.name)
    runs = []
    for p in paths:
        run = (p if p.is_dir() else p.parent) / "run.json"
        if run.is_file():
            try:
                runs.append(json.loads(run.read_text(encoding="utf-8")))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{run}: not valid JSON ({exc})") from exc
    info = {"root": str(root), "videos": len(seq), "frames": frames, "counted_frames": counted, "fps": sorted(rates),
            "with_conditions": conditioned, "seeds": [r.get("seed") for r in runs if isinstance(r, dict) and "seed" in r]}
    if off_rate:
        log.warning("%d generated video(s) are not at the protocol's %g fps (e.g. %s)", len(off_rate), protocol.fps,
                    off_rate[0])
    return seq, info


def load_real(protocol: ProtocolConfig, real: str | Path | None, data: Any,
              by_content: bool = False) -> tuple[VideoSeq, dict]:
    if real is not None and data is not None:
        raise ValueError("give either real=<folder> or data=<dataset config>, not both")
    if real is not None:
        return real_from_folder(real, protocol)
    if data is not None:
        return real_from_data(data, protocol, by_content=by_content)
    if protocol.dataset == "synthetic":
        return real_from_synth_benchmark(protocol)
    raise ValueError(f"protocol {protocol.name} measures against {protocol.dataset}: give data=<config> or real=<folder>")


def evaluate_folder(generated: str | Path, *, real: str | Path | None = None, data: Any = None,
                    protocol: str | ProtocolConfig | DictConfig | dict = "synth-bench-v1", metrics: list[str] | None = None,
                    out: str | Path | None = None, inception: str | None = None, i3d: str | None = None,
                    layout_detector: str | None = None, batch_size: int = 8, cache: bool = True,
                    data_by_content: bool = False, strict: bool = True) -> dict:
    """Evaluate the videos under `generated`; write DIR/metrics.json, summary.md and plots when `out` is set.
    `data_by_content`: the real side's cache key is the dataset's file content (a folder re-rendered or moved
    still hits the cache; hashing reads every file, so meant for small data such as the demo's scene).
    `strict`: a group named in `metrics` that cannot run raises `Unavailable`; else it is listed under
    `unavailable` with its reason and the others still run."""
    proto = as_protocol(protocol)
    gen_videos, gen_info = load_generated(generated, proto)
    real_videos, real_info = load_real(proto, real, data, by_content=data_by_content)
    opts = SuiteOptions(proto, metrics, inception, i3d, layout_detector, batch_size,
                        real_identity=real_info.get("identity") if cache else None, strict=strict)
    result = run_suite(gen_videos, real_videos, opts)
    real_info["frames_read"] = sum(real_videos.frames_seen.values())
    if real_videos.rates:  # read this run (a cached real side reads none)
        real_info["fps"] = sorted(real_videos.rates)
        off = [r for r in real_info["fps"] if abs(r - proto.fps) > 1e-3]
        if off:
            log.warning("real videos at %s fps, not the protocol's %g fps: per-second figures and clips differ in time",
                        ", ".join(f"{r:g}" for r in off), proto.fps)
    report = {"protocol": protocol_record(proto, result.extractors, gen_info, real_info),
              "metrics": result.metrics, "unavailable": result.unavailable, "seconds": result.seconds}
    if out is not None:
        path = write_report(report, out)
        log.info("wrote %s", path)
    return report


class EvaluationError(RuntimeError):
    """Bad input or a metric that cannot run, as one line (the CLI exits 2 with it)."""


def run_evaluate(cfg: DictConfig) -> int:
    """The CLI runner: 0 on success; EvaluationError (one line) for bad input or a metric that cannot run."""
    try:
        evaluate_folder(cfg.generated, real=cfg.real, data=cfg.data, protocol=cfg.protocol,
                        metrics=list(cfg.metrics) if cfg.metrics is not None else None, out=cfg.out,
                        inception=cfg.inception, i3d=cfg.i3d, layout_detector=cfg.layout_detector,
                        batch_size=int(cfg.batch_size), cache=bool(cfg.cache))
    except (Unavailable, MissingExtractorError, DataError, FileNotFoundError, ValueError) as exc:
        raise EvaluationError(" ".join(str(exc).split())) from exc
    return 0
