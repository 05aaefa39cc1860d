"""Run a rollout into an output folder, chunk by chunk, resumable; then write the final outputs.

`rollout_to_folder` is the whole job of one seed: plan, resume from the stored state, run the
remaining chunks (each one's frames become a segment on disk; only the context keys stay in
memory), then stream the segments into video.mp4, overlay.mp4, contact_sheet.png, conditions.jsonl
and run.json.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from drivesim.atomic import atomic_path
from drivesim.pipelines.engine import Engine, keys_kept
from drivesim.pipelines.plan import RolloutPlan
from drivesim.pipelines.provenance import provenance
from drivesim.pipelines.store import RolloutState, RolloutStore
from drivesim.pipelines.writers import Mp4Writer, contact_sheet_frames, draw_boxes, write_contact_sheet
from drivesim.scenario.timeline import Timeline

log = logging.getLogger(__name__)
OUTPUTS = ("video.mp4", "overlay.mp4", "contact_sheet.png", "conditions.jsonl", "run.json")


@dataclass
class GivenContext:
    """Key latents of given frames (oldest first, (1, C, h, w) each), e.g. a replayed scene's last frames."""

    keys: list[torch.Tensor]
    description: dict[str, Any] = field(default_factory=dict)  # recorded in run.json


@dataclass
class RolloutResult:
    out: Path
    paths: dict[str, Path]
    frames: int
    seconds: dict[str, float]


def rollout_to_folder(engine: Engine, timeline: Timeline, scene: Any, out: str | Path, seed: int,
                      seconds: float, settings: Mapping[str, Any], resume: bool = True,
                      given: GivenContext | None = None, show_progress: bool = True,
                      record: Mapping[str, Any] | None = None) -> RolloutResult:
    """Roll out `seconds` of video for `seed` into `out` (resuming a run of the same `settings`).

    `record` adds entries to run.json (e.g. the exports used).
    """
    out = Path(out)
    frames = max(1, round(seconds * engine.out_fps))
    plan = engine.plan(frames, given=len(given.keys) if given else 0)
    chunks = plan.chunks()
    store = RolloutStore(out)
    resuming = store.check_config(settings, resume)
    if not resuming:
        store.start(settings, fresh=True)
    state = store.load_state()
    if state.next_chunk == 0:
        state = RolloutState(keys={j: z for j, z in zip(range(1 - len(given.keys), 1), given.keys)} if given else {})
    elif state.next_chunk < len(chunks) or not state.complete:
        log.info("resuming %s at chunk %d of %d", out, state.next_chunk, len(chunks))
    done = chunks[state.next_chunk - 1].outputs[1] if state.next_chunk else 0
    with _progress(frames, engine.out_fps, show_progress and sys.stderr.isatty(), state.seconds) as bar:
        bar(done)
        for chunk in chunks[state.next_chunk:]:
            result = engine.run_chunk(chunk, plan, timeline, scene, state.keys, seed)
            store.write_segment(chunk.index, chunk.outputs[0], result.frames)
            state = RolloutState(next_chunk=chunk.index + 1,
                                 keys=keys_kept({**state.keys, **result.keys}, engine.context_frames),
                                 seconds={k: state.seconds.get(k, 0.0) + result.seconds.get(k, 0.0)
                                          for k in set(state.seconds) | set(result.seconds)})
            store.save_state(state)
            bar(chunk.outputs[1])
    paths = _write_outputs(store, plan, len(chunks), timeline, seed, settings, state.seconds, given, record or {})
    state.complete = True
    store.save_state(state)
    for name, path in paths.items():
        log.info("%s: %s", name, path)
    return RolloutResult(out, paths, frames, state.seconds)


def _write_outputs(store: RolloutStore, plan: RolloutPlan, chunks: int, timeline: Timeline, seed: int,
                   settings: Mapping[str, Any], seconds: Mapping[str, float],
                   given: GivenContext | None, extra: Mapping[str, Any]) -> dict[str, Path]:
    out = store.out
    paths = {name.split(".")[0]: out / name for name in OUTPUTS}
    for name in OUTPUTS:  # temp files of an assembly killed earlier
        for stale in out.glob(f".{name}.*.tmp"):
            stale.unlink(missing_ok=True)
    picks = set(contact_sheet_frames(plan.frames))
    sheet, sheet_labels = [], []
    written = 0
    with Mp4Writer(paths["video"], plan.out_fps) as video, Mp4Writer(paths["overlay"], plan.out_fps) as overlay, \
            atomic_path(paths["conditions"]) as cond_tmp, cond_tmp.open("w", encoding="utf-8") as jsonl:
        for first, frames in store.segments(chunks):
            for k, frame in enumerate(frames):
                i = first + k
                fc = timeline.at(i / plan.out_fps)
                video.write(frame)
                overlay.write(draw_boxes(frame, fc.boxes))
                jsonl.write(json.dumps(fc.to_json(i)) + "\n")
                if i in picks:
                    sheet.append(frame)
                    sheet_labels.append(f"{i / plan.out_fps:.2f} s")
                written += 1
        if written != plan.frames:  # inside the writers: a short video never replaces a good one
            raise RuntimeError(f"{out}: segments hold {written} frames, expected {plan.frames}")
    write_contact_sheet(paths["contact_sheet"], sheet, sheet_labels)
    wall = sum(seconds.values())
    video_s = plan.frames / plan.out_fps
    record = {
        "config": dict(settings), "seed": seed, "frames": plan.frames, "fps": plan.out_fps,
        "seconds_of_video": video_s, "key_frames": plan.last_key + 1, "chunks": chunks,
        "given_context": given.description if given else None,
        "stage_seconds": {k: round(v, 4) for k, v in sorted(seconds.items())},
        "seconds_per_output_frame": wall / plan.frames,
        # Seconds of video made per second of compute (> 1: faster than real time).
        "realtime_factor": video_s / wall if wall > 0 else None,
        "outputs": {k: str(v) for k, v in paths.items()},
        **extra,
        **provenance(),
    }
    with atomic_path(paths["run"]) as tmp:
        tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
    return paths


@contextmanager
def _progress(total: int, fps: float, show: bool, seconds: Mapping[str, float]) -> Iterator[Any]:
    """A callable `bar(frames_done)`: frames, seconds of video and the real-time factor, on a terminal."""
    start, before = time.perf_counter(), sum(seconds.values())
    if not show:
        def update(done: int) -> None:
            log.debug("%d/%d frames", done, total)
        yield update
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("generate"), BarColumn(), TextColumn("{task.completed}/{task.total} frames"),
                  TextColumn("{task.fields[video]:.1f} s video"), TextColumn("RTF {task.fields[rtf]}"),
                  TimeRemainingColumn(), console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("generate", total=total, video=0.0, rtf="-")

        def update_bar(done: int) -> None:
            wall = before + time.perf_counter() - start
            rtf = f"{done / fps / wall:.3f}" if wall > 0 and done else "-"
            progress.update(task, completed=done, video=done / fps, rtf=rtf)
        yield update_bar
