"""The x4 video upsampler at generation: a finished rollout's frames -> `video_hr.mp4`, window by window.

The low-res frames stream from the rollout's segments (`.rollout/segment_*.npz`, exact uint8 frames),
are encoded as the upsampler was trained (its `lowres_input`: upscaled x`upscale` bilinear then encoded,
or encoded then repeated x`upscale` nearest; noise-augmented at a fixed level the model is told; the
clean upscaled guess also feeds a guess blend and `sampler.init_strength`) and denoised `frames` at a time. Windows
overlap by `overlap` frames: those frames are given (their high-res latents from the window before,
re-imposed at every step by the sampler), so the temporal layers continue across window borders.
Memory holds one window; each window's randomness is a function of (seed, window).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from drivesim.atomic import atomic_write_text
from drivesim.diffusion.sampling import GivenFrames, make_scheduler, sample_video
from drivesim.models import VideoUNet
from drivesim.models.vae import VideoVAE
from drivesim.pipelines.engine import SamplerSettings, chunk_generator, in_model_dtype
from drivesim.pipelines.errors import GenerateError
from drivesim.pipelines.store import RolloutStore
from drivesim.pipelines.writers import Mp4Writer
from drivesim.training.upsampler_module import (
    check_lowres_input,
    encode_lowres,
    lowres_input,
    upsampler_condition,
)

log = logging.getLogger(__name__)
WINDOW_STREAM = 1_000_000  # upsampler windows draw from chunk generators (seed, WINDOW_STREAM + window)
CPU_SECONDS = 2.0  # the default `upsample_seconds` on CPU (all of the video on a GPU)


@dataclass
class Upsampler:
    unet: VideoUNet
    vae: VideoVAE  # the cascade's (so a temporal decoder decodes the high-res frames too)
    schedule: dict[str, object]
    sampler: SamplerSettings
    upscale: int = 4
    frames: int = 8  # frames per window (the export's clip length)
    overlap: int = 2  # frames each window shares with the one before
    noise_level: float = 0.1  # augmentation level of the low-res latents at sampling, in [0, 1]
    lowres_mode: str = "latents"  # the export's stage.lowres_input (exports before session 13: latents)
    guess: bool = False  # the model blends its output with the upscaled guess (stage.guess_blend)
    decode_chunk: int = 8
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not 0 <= self.overlap < self.frames:
            raise GenerateError(f"upsampler overlap {self.overlap} must lie in [0, frames={self.frames})")
        try:
            check_lowres_input(self.lowres_mode)
        except ValueError as exc:
            raise GenerateError(str(exc)) from exc
        if self.guess and self.lowres_mode != "upscaled":
            raise GenerateError("an upsampler with a guess blend needs lowres_input=upscaled")

    @torch.no_grad()
    def window(self, low: np.ndarray, given: Tensor | None, gen: torch.Generator) -> Tensor:
        """uint8 low-res frames (n, h, w, 3) -> high-res latents (1, n, C, H, W); `given` (1, o, C, H, W)
        are the first o frames' latents, kept."""
        x = torch.from_numpy(low).permute(0, 3, 1, 2)[None].to(self.device).float() / 127.5 - 1.0
        dtype = self.vae.vae.dtype
        encoded = encode_lowres(self.vae, x.to(dtype), self.upscale, self.lowres_mode).float()
        lowres = lowres_input(encoded, self.upscale, self.lowres_mode)
        aug = torch.randn(lowres.shape, generator=gen).to(lowres.device)
        cond = upsampler_condition(lowres, torch.full((1,), self.noise_level), aug, guess=self.guess)
        noise = torch.randn(lowres.shape, generator=gen).to(lowres.device)
        frames = None
        if given is not None:
            full = torch.zeros_like(noise)
            full[:, : given.shape[1]] = given
            mask = torch.zeros(noise.shape[:2], device=noise.device)
            mask[:, : given.shape[1]] = 1.0
            frames = GivenFrames(full, mask)
        scheduler = make_scheduler(self.sampler.name, self.schedule, self.sampler.timestep_spacing, self.sampler.eta)
        return sample_video(in_model_dtype(self.unet), scheduler, noise, cond, self.sampler.steps, frames, gen,
                            lowres, self.sampler.init_strength)

    def decode(self, latents: Tensor) -> np.ndarray:
        video = self.vae.decode_video(latents.to(self.vae.vae.dtype), self.decode_chunk)[0]
        return ((video.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()

    def stream(self, frames: Iterable[np.ndarray], seed: int) -> Iterator[np.ndarray]:
        """High-res uint8 frames (H, W, 3), one per low-res frame of `frames`, in order."""
        pending: list[np.ndarray] = []
        given: Tensor | None = None
        index = 0

        def run(window: list[np.ndarray]) -> tuple[Tensor, np.ndarray]:
            real = len(window)
            padded = window + [window[-1]] * (self.frames - real)  # the last window: repeat its last frame
            z = self.window(np.stack(padded), given, chunk_generator(seed, WINDOW_STREAM + index))[:, :real]
            start = 0 if given is None else given.shape[1]
            return z, self.decode(z[:, start:])

        for frame in frames:
            pending.append(frame)
            if len(pending) == self.frames:
                z, out = run(pending)
                yield from out
                given = z[:, self.frames - self.overlap:] if self.overlap else None
                pending = pending[self.frames - self.overlap:] if self.overlap else []
                index += 1
        kept = 0 if given is None else given.shape[1]
        if len(pending) > kept:
            _, out = run(pending)
            yield from out


def rollout_frames(folder: Path, limit: int) -> Iterator[np.ndarray]:
    """The first `limit` final frames of a finished rollout in `folder`, from its segments."""
    store = RolloutStore(folder)
    chunks = len(list(store.folder.glob("segment_*.npz")))
    count = 0
    for _, frames in store.segments(chunks):
        for frame in frames:
            if count == limit:
                return
            yield frame
            count += 1


def upsample_folder(up: Upsampler, folder: Path, seed: int, fps: float, frames: int,
                    seconds: float | None) -> Path:
    """Write `folder/video_hr.mp4` (and `video_hr.json`: frames, timings) for the first `seconds`."""
    limit = frames if seconds is None else min(frames, max(1, round(seconds * fps)))
    path = folder / "video_hr.mp4"
    start = time.perf_counter()
    written = 0
    with Mp4Writer(path, fps) as writer:
        for frame in up.stream(rollout_frames(folder, limit), seed):
            writer.write(frame)
            written += 1
    wall = time.perf_counter() - start
    if written != limit:
        raise RuntimeError(f"{folder}: upsampled {written} frames, expected {limit}")
    record = {"frames": written, "fps": fps, "upscale": up.upscale, "window": up.frames, "overlap": up.overlap,
              "noise_level": up.noise_level, "lowres_input": up.lowres_mode, "guess_blend": up.guess,
              "wall_s": round(wall, 3),
              "seconds_per_output_frame": wall / max(written, 1)}
    atomic_write_text(folder / "video_hr.json", json.dumps(record, indent=2) + "\n")
    log.info("video_hr.mp4: %d frames, %.3f s per output frame", written, record["seconds_per_output_frame"])
    return path
