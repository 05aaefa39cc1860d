"""The on-disk rollout: numbered segments of final frames plus the rollout state, for exact resume.

Layout under `<out>/.rollout/`: `config.json` (the settings the run was made with), one
`segment_<chunk>.npz` per finished chunk (uint8 frames, written to a temp name then renamed),
`keys_<chunk>.safetensors` (the key latents the next chunk conditions on) and `state.json` (which
chunk is next, which keys file holds the context, timings). `state.json` is replaced last, so a kill
at any point leaves the previous consistent state; the redone chunk rewrites identical files.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from drivesim.atomic import atomic_path, atomic_write_text
from drivesim.config.diff import differing_keys

STATE_VERSION = 1


class RunMismatchError(ValueError):
    """`out=` holds a run made with different settings (one line naming the keys)."""


@dataclass
class RolloutState:
    next_chunk: int = 0
    keys: dict[int, torch.Tensor] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)  # wall seconds per stage, summed over chunks
    complete: bool = False


class RolloutStore:
    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.folder = self.out / ".rollout"

    # ------------------------------------------------------------------ the run's identity
    def check_config(self, settings: Mapping[str, Any], resume: bool) -> bool:
        """True when a previous run of the same settings is here to resume.

        A run of other settings raises `RunMismatchError` naming the keys, unless `resume` is False,
        in which case the previous rollout is discarded (call `start` to record the new settings).
        """
        file = self.folder / "config.json"
        if not file.is_file():
            return False
        previous = json.loads(file.read_text())
        diff = differing_keys(previous, json.loads(json.dumps(settings)))
        if not resume:
            return False
        if diff:
            shown = ", ".join(diff[:8]) + (" ..." if len(diff) > 8 else "")
            raise RunMismatchError(f"{self.out} holds a run with different settings ({shown}); "
                                   "use another out= or resume=false to start over")
        return True

    def start(self, settings: Mapping[str, Any], fresh: bool) -> None:
        if fresh and self.folder.exists():
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.folder / "config.json", json.dumps(settings, indent=2, sort_keys=True, default=str))

    # ------------------------------------------------------------------ state
    def load_state(self) -> RolloutState:
        file = self.folder / "state.json"
        if not file.is_file():
            return RolloutState()
        data = json.loads(file.read_text())
        keys: dict[int, torch.Tensor] = {}
        if data.get("keys_file"):
            keys = {int(k): v for k, v in load_file(str(self.folder / data["keys_file"])).items()}
        return RolloutState(next_chunk=int(data["next_chunk"]), keys=keys, seconds=dict(data.get("seconds", {})),
                            complete=bool(data.get("complete", False)))

    def save_state(self, state: RolloutState) -> None:
        keys_file = f"keys_{state.next_chunk:06d}.safetensors"
        with atomic_path(self.folder / keys_file) as tmp:
            save_file({str(j): z.detach().cpu().contiguous() for j, z in state.keys.items()}, str(tmp))
        data = {"version": STATE_VERSION, "next_chunk": state.next_chunk, "keys_file": keys_file,
                "seconds": state.seconds, "complete": state.complete}
        atomic_write_text(self.folder / "state.json", json.dumps(data, indent=2))
        for old in self.folder.glob("keys_*.safetensors"):
            if old.name != keys_file:
                old.unlink(missing_ok=True)

    # ------------------------------------------------------------------ segments
    def segment_path(self, chunk: int) -> Path:
        return self.folder / f"segment_{chunk:06d}.npz"

    def write_segment(self, chunk: int, first_frame: int, frames: np.ndarray) -> None:
        with atomic_path(self.segment_path(chunk)) as tmp, tmp.open("wb") as fh:
            np.savez_compressed(fh, frames=frames, first_frame=np.array(first_frame))

    def segments(self, chunks: int) -> Iterator[tuple[int, np.ndarray]]:
        """(first output frame, uint8 frames (n, H, W, 3)) of chunks 0..chunks-1, one at a time."""
        for c in range(chunks):
            with np.load(self.segment_path(c)) as data:
                yield int(data["first_frame"]), data["frames"]

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
