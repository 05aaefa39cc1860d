"""Every metric group of `drivesim evaluate` over generated and real videos, under one protocol.

Groups: fid, fvd, fid_synth, fvd_synth, layout, temporal, action. With `metrics=None` every group
the inputs, ground truth and available networks allow runs, and the others are listed with the one
line saying why; a group asked for by name that cannot run raises `Unavailable` with that line.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from drivesim.config.protocol import ProtocolConfig
from drivesim.metrics.distinct import per_distinct_frame
from drivesim.metrics.drift import drift_record
from drivesim.metrics.extractors import MissingExtractorError
from drivesim.metrics.frechet_runs import NotEnoughSamples, Unit, run_frechet
from drivesim.metrics.videos import EvalVideo, VideoSeq

log = logging.getLogger(__name__)

GROUPS = ("fid", "fvd", "fid_synth", "fvd_synth", "layout", "temporal", "action")


#: Held-out R2 the attribute encoder's speed and yaw-rate heads need before action adherence is reported.
ACTION_MIN_R2 = 0.5


class Unavailable(RuntimeError):
    """A metric group that cannot run on these inputs (one line saying why)."""


@dataclass
class SuiteOptions:
    protocol: ProtocolConfig
    metrics: list[str] | None = None
    inception: str | None = None
    i3d: str | None = None
    layout_detector: str | None = None
    batch_size: int = 8  # 8: fastest for the Inception and the segnet on 2 CPU cores (session 12)
    real_identity: str | None = None  # None: never cache real-side features
    # A group named in `metrics` that cannot run: raise Unavailable (strict) or list it with its reason.
    strict: bool = True


@dataclass
class SuiteResult:
    metrics: dict[str, dict] = field(default_factory=dict)
    extractors: dict[str, Any] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # wall time of each group that ran


def first_counted(protocol: ProtocolConfig) -> int:
    """Index of the first frame that counts: context frames are left out unless the protocol counts them."""
    return 0 if protocol.count_context else protocol.context_frames


def clip_length(protocol: ProtocolConfig) -> int:
    return protocol.clip_frames - first_counted(protocol)


class FrameStride:
    """Every `step`-th counted frame, the count running on across videos, so that a side cut into short clips (a
    real side of 16-frame clips) is sampled at the same rate as long videos."""

    def __init__(self, protocol: ProtocolConfig, field_name: str) -> None:
        self.step = int(getattr(protocol, field_name))
        if self.step < 1:
            raise ValueError(f"protocol {protocol.name}: {field_name} must be >= 1, got {self.step}")
        self.seen = 0

    def indices(self, counted: int) -> np.ndarray:
        """Indices (among this video's `counted` counted frames) of the frames taken."""
        index = np.arange((-self.seen) % self.step, max(0, counted), self.step)
        self.seen += max(0, counted)
        return index


def frame_units(videos: Iterable[EvalVideo], protocol: ProtocolConfig) -> Iterator[Unit]:
    """Every `fid_frame_stride`-th counted frame (`FrameStride`), one video at a time."""
    start, stride = first_counted(protocol), FrameStride(protocol, "fid_frame_stride")
    for v in videos:
        index = stride.indices(v.frames.shape[0] - start)
        yield Unit(v.frames[start + index], (index + 0.5) / v.fps)


def clip_units(videos: Iterable[EvalVideo], protocol: ProtocolConfig) -> Iterator[Unit]:
    """Consecutive non-overlapping clips of `clip_length` counted frames from each video."""
    start, length = first_counted(protocol), clip_length(protocol)
    for v in videos:
        frames = v.frames[start:]
        starts = list(range(0, frames.shape[0] - length + 1, length))
        if starts:
            yield Unit(torch.stack([frames[s:s + length] for s in starts]),
                       np.array([(s + length / 2) / v.fps for s in starts]))


def with_conditions(videos: Iterable[EvalVideo]) -> Iterator[EvalVideo]:
    return (v for v in videos if v.conditions is not None)


def _need(flag: bool, reason: str) -> None:
    if not flag:
        raise Unavailable(reason)


#: Version of the code that turns real data into a metric's real side (loaders, preprocessing, the metric's own
#: scoring): part of every cache key, so bump it with any change there - an old cached real side is then unused.
REAL_SIDE_VERSION = 2  # 2: evaluate reads videos in display orientation, natural image order


def _cache_key(name: str, opts: SuiteOptions, extractor: dict) -> dict | None:
    if opts.real_identity is None:
        return None
    from drivesim.metrics.protocol import plain

    proto = {k: v for k, v in plain(opts.protocol).items() if k != "description"}
    return {"metric": name, "real": opts.real_identity, "protocol": proto, "extractor": extractor.get("sha256"),
            "code": REAL_SIDE_VERSION}


#: Real-side results of the groups without a feature cache (temporal, layout, action), kept for this process: a
#: benchmark scoring several methods against one real side computes it once (it was 5x the work before).
_REAL_MEMO: dict[str, Any] = {}
_REAL_MEMO_SIZE = 16


def _real_side(name: str, opts: SuiteOptions, extractor: dict, compute: Callable[[], Any]) -> Any:
    """The real side from this process's memo, else the disk caches (`real_cache`), else computed (and stored)."""
    from drivesim.metrics import real_cache

    key = _cache_key(name, opts, extractor)
    if key is None:
        return compute()
    blob = json.dumps(key, sort_keys=True, default=str)
    if blob in _REAL_MEMO:
        log.info("%s: real side reused (computed earlier in this process)", name)
        return _REAL_MEMO[blob]
    value = real_cache.load(name, key)
    if value is None:
        value = compute()
        real_cache.store(name, key, value)
    if len(_REAL_MEMO) >= _REAL_MEMO_SIZE:
        _REAL_MEMO.pop(next(iter(_REAL_MEMO)))
    _REAL_MEMO[blob] = value
    return value


def _fid(gen: VideoSeq, real: VideoSeq, opts: SuiteOptions, out: SuiteResult) -> None:
    from drivesim.metrics.fid import FID

    metric = FID(opts.inception, batch_size=opts.batch_size)
    out.extractors["fid"] = metric.protocol()
    out.metrics["fid"] = run_frechet("fid", metric, frame_units(gen, opts.protocol),
                                     lambda: frame_units(real, opts.protocol), (len(gen), len(real)),
                                     _cache_key("fid", opts, metric.file.record()), opts.protocol.window_seconds)


def _fvd(gen: VideoSeq, real: VideoSeq, opts: SuiteOptions, out: SuiteResult) -> None:
    from drivesim.metrics.fvd import FVD

    metric = FVD(opts.i3d)
    out.extractors["fvd"] = {**metric.protocol(), "clip_frames": clip_length(opts.protocol)}
    out.metrics["fvd"] = run_frechet("fvd", metric, clip_units(gen, opts.protocol),
                                     lambda: clip_units(real, opts.protocol), (len(gen), len(real)),
                                     _cache_key("fvd", opts, metric.file.record()), opts.protocol.window_seconds)


def _encoder(out: SuiteResult) -> Any:
    from drivesim.metrics.nets.attrnet import build_attrnet
    from drivesim.metrics.nets.weights import ATTRIBUTE_NET, load_net

    loaded = load_net(ATTRIBUTE_NET, build_attrnet)
    out.extractors["attributes"] = loaded.record()
    return loaded.module


def _fid_synth(gen: VideoSeq, real: VideoSeq, opts: SuiteOptions, out: SuiteResult) -> None:
    from drivesim.metrics.synth_frechet import FIDSynth

    metric = FIDSynth(_encoder(out))
    out.metrics["fid_synth"] = run_frechet("fid_synth", metric, frame_units(gen, opts.protocol),
                                           lambda: frame_units(real, opts.protocol), (len(gen), len(real)),
                                           _cache_key("fid_synth", opts, out.extractors["attributes"]),
                                           opts.protocol.window_seconds)


def _fvd_synth(gen: VideoSeq, real: VideoSeq, opts: SuiteOptions, out: SuiteResult) -> None:
    from drivesim.metrics.synth_frechet import FVDSynth

    metric = FVDSynth(_encoder(out))
    out.metrics["fvd_synth"] = run_frechet("fvd_synth", metric, clip_units(gen, opts.protocol),
                                           lambda: clip_units(real, opts.protocol), (len(gen), len(real)),
                                           _cache_key("fvd_synth", opts, out.extractors["attributes"]),
                                           opts.protocol.window_seconds)


def _finite(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _temporal(gen: VideoSeq, real: VideoSeq, opts: SuiteOptions, out: SuiteResult) -> None:
    import cv2

    from drivesim.metrics.temporal import closeness, pooled, temporal_series_many

    p, start = opts.protocol, first_counted(opts.protocol)
    gs = temporal_series_many((v.frames[start:], v.fps) for v in gen if v.frames.shape[0] - start >= 2)
    rs = _real_side("temporal", opts, {"sha256": f"opencv-dis-medium/{cv2.__version__}"},
                    lambda: temporal_series_many((v.frames[start:], v.fps) for v in real
                                                 if v.frames.shape[0] - start >= 2))
    _need(bool(gs) and bool(rs), "temporal: needs at least 2 counted frames in a generated and a real video")
    gw, gf, n = pooled(gs)
    rw, rf, n_real = pooled(rs)
    times = np.concatenate([s.times for s in gs])
    out.metrics["temporal_warp"] = {
        "value": closeness(gw, rw, p.warp_eps), "n": n, "n_real": n_real, "eps": p.warp_eps,
        "generated": _finite(gw), "real": _finite(rw), "unit": "|log((gen + e) / (real + e))| of the mean warp error",
        "drift": drift_record(times, np.concatenate([s.warp_error for s in gs]), p.window_seconds)}
    out.metrics["temporal_flow"] = {
        "value": closeness(gf, rf, p.flow_eps), "n": n, "n_real": n_real, "eps": p.flow_eps,
        "generated": _finite(gf), "real": _finite(rf), "unit": "|log((gen + e) / (real + e))| of the mean flow (px)",
        "drift": drift_record(times, np.concatenate([s.flow_magnitude for s in gs]), p.window_seconds)}
    out.extractors["temporal"] = {"flow": "OpenCV DIS, PRESET_MEDIUM, grey frames", "warp": "cv2.remap bilinear"}


def _detector(opts: SuiteOptions, out: SuiteResult) -> Callable[[torch.Tensor], torch.Tensor]:
    if opts.layout_detector:
        from drivesim.metrics.layout import TorchScriptDetector

        det = TorchScriptDetector(opts.layout_detector)
        out.extractors["layout"] = det.record()
        return det.predict
    from drivesim.metrics.nets.segnet import build_segnet
    from drivesim.metrics.nets.weights import LAYOUT_NET, load_net

    loaded = load_net(LAYOUT_NET, build_segnet)
    out.extractors["layout"] = loaded.record()
    return loaded.module.predict  # type: ignore[return-value]


def _layout(gen: VideoSeq, real: VideoSeq, opts: SuiteOptions, out: SuiteResult) -> None:
    from drivesim.metrics.layout import MIN_REAL_RECALL, score_frames

    p, start = opts.protocol, first_counted(opts.protocol)
    predict = _detector(opts, out)

    def scores(videos: Iterable[EvalVideo], missing: str) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
        parts, times, recall = [], [], []
        stride = FrameStride(p, "layout_frame_stride")
        for v in with_conditions(videos):
            assert v.conditions is not None  # as long as the frames (EvalVideo checks it)
            index = stride.indices(v.frames.shape[0] - start)
            if not len(index):
                continue
            frames = v.frames[start + index]
            conds = [v.conditions[start + int(i)] for i in index]
            labels = per_distinct_frame(frames, predict, opts.batch_size)  # a held frame: one pass
            s = score_frames(labels, conds, p.min_box_px)
            parts.append(s)
            times.append((index + 0.5) / v.fps)
            recall.append(np.where(s.boxes > 0, s.found / np.maximum(s.boxes, 1), np.nan))
        _need(bool(parts), missing)
        boxes = np.concatenate([s.boxes for s in parts])
        found = np.concatenate([s.found for s in parts])
        halluc = np.concatenate([s.hallucinated for s in parts])
        summary = {"recall": float(found.sum() / boxes.sum()) if boxes.sum() else math.nan, "boxes": int(boxes.sum()),
                   "hallucinated_area": float(halluc.mean()), "frames": int(halluc.size)}
        return summary, np.concatenate(times), np.concatenate(recall), halluc

    g, times, recall, halluc = scores(gen, "layout: no generated video has conditions.jsonl (conditioning boxes)")
    r, _, _, _ = _real_side("layout", opts, out.extractors["layout"],
                            lambda: scores(real, "layout: the real side has no boxes to calibrate the detector on"))
    trusted = bool(r["boxes"]) and r["recall"] >= MIN_REAL_RECALL
    if not trusted:
        log.warning("layout: the detector finds %.2f of the real boxes (< %.2f): too weak to judge generated layout",
                    r["recall"], MIN_REAL_RECALL)
    out.metrics["layout_recall"] = {"value": _finite(g["recall"]), "n": g["boxes"], "real": _finite(r["recall"]),
                                    "n_real": r["boxes"], "detector_trusted": trusted, "min_box_px": p.min_box_px,
                                    "drift": drift_record(times, recall, p.window_seconds)}
    out.metrics["layout_hallucinated_area"] = {"value": g["hallucinated_area"], "n": g["frames"],
                                               "real": r["hallucinated_area"], "n_real": r["frames"],
                                               "drift": drift_record(times, halluc, p.window_seconds)}


def _action(gen: VideoSeq, real: VideoSeq, opts: SuiteOptions, out: SuiteResult) -> None:
    from drivesim.metrics.action import action_series, known, mean_error

    p, start = opts.protocol, first_counted(opts.protocol)
    encoder = _encoder(out)
    validation = out.extractors["attributes"].get("training", {}).get("validation", {})
    fits = {n: validation.get(f"r2_{n}") for n in ("speed", "yaw_rate")}
    trusted = [n for n, v in fits.items() if v is not None and v >= ACTION_MIN_R2]
    _need(bool(trusted), f"action: the attribute encoder reads ego motion too poorly to judge it (held-out R2 "
          f"speed {fits['speed']}, yaw rate {fits['yaw_rate']}; needs >= {ACTION_MIN_R2})")
    gs = [action_series(encoder, v, start) for v in with_conditions(gen)]
    _need(bool(gs), "action: no generated video has conditions.jsonl (commanded ego speed and yaw rate)")
    rs = _real_side("action", opts, out.extractors["attributes"],
                    lambda: [action_series(encoder, v, start) for v in with_conditions(real)])
    _need(any(mean_error(gs, q)[1] for q in ("speed", "yaw_rate")),
          "action: no window of the generated videos has known ego commands")
    units = {"speed": "m/s MAE", "yaw_rate": "rad/s MAE"}
    for name, unit in units.items():
        if name not in trusted:  # one head may read its quantity while the other cannot: only that one reports
            out.unavailable[f"action_{name}"] = (f"the attribute encoder's {name} head is too weak to judge it "
                                                 f"(held-out R2 {fits[name]}; needs >= {ACTION_MIN_R2})")
            continue
        value, n = mean_error(gs, name)
        if n == 0:  # a scenario may command speed alone: the other quantity has nothing to compare with
            out.unavailable[f"action_{name}"] = f"no window of the generated videos commands the ego {name}"
            continue
        real_value, n_real = mean_error(rs, name)
        times, errors = known(gs, name)
        out.metrics[f"action_{name}"] = {"value": value, "n": n, "real": _finite(real_value), "n_real": n_real,
                                         "unit": unit, "encoder_r2": fits[name],
                                         "drift": drift_record(times, errors, p.window_seconds)}


_RUNNERS = {"fid": _fid, "fvd": _fvd, "fid_synth": _fid_synth, "fvd_synth": _fvd_synth, "layout": _layout,
            "temporal": _temporal, "action": _action}


def run_suite(generated: VideoSeq, real: VideoSeq, opts: SuiteOptions) -> SuiteResult:
    """Run the asked groups (all that can run when `opts.metrics` is None)."""
    asked = list(opts.metrics) if opts.metrics is not None else list(GROUPS)
    unknown = [m for m in asked if m not in _RUNNERS]
    if unknown:
        raise Unavailable(f"unknown metric(s) {unknown}; choose from {', '.join(GROUPS)}")
    if not generated:
        raise Unavailable("no generated videos to evaluate")
    if not real:
        raise Unavailable("no real videos to compare with")
    result = SuiteResult()
    for name in asked:
        if opts.metrics is None and name == "fvd" and not opts.i3d and not _env_i3d():
            result.unavailable[name] = "fvd runs when an I3D file is given (i3d=PATH or $DRIVESIM_I3D)"
            continue
        began = time.perf_counter()
        try:
            _RUNNERS[name](generated, real, opts, result)
            result.seconds[name] = round(time.perf_counter() - began, 2)
            log.info("%s: %.1f s", name, result.seconds[name])
        except (Unavailable, MissingExtractorError, NotEnoughSamples) as exc:
            if opts.metrics is not None and opts.strict:
                raise Unavailable(str(exc)) from exc
            result.unavailable[name] = str(exc)
            log.warning("%s: not measured: %s", name, exc)
    return result


def _env_i3d() -> bool:
    import os

    return bool(os.environ.get("DRIVESIM_I3D"))
