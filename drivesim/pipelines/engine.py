"""The rollout engine: image model -> prediction chunks -> interpolation passes -> decoded frames.

`Engine` is built from models (not files): `drivesim.pipelines.loading` makes one from exports. It
runs one `Chunk` of a `RolloutPlan` at a time, given the latents of the keys it conditions on, and
returns the new keys plus the decoded output frames the chunk finalises; nothing else is kept.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from drivesim.diffusion.cfg import GuidancePlan, GuidedDenoiser
from drivesim.diffusion.sampling import (
    GivenFrames,
    context_init,
    frame_correlated_noise,
    make_scheduler,
    sample_video,
)
from drivesim.models import VideoCondition, VideoUNet
from drivesim.models.conditioning.context import given_anchor
from drivesim.models.vae import VideoVAE
from drivesim.pipelines.conditions import (
    SceneInputs,
    Supports,
    batch_condition,
    frame_condition,
    with_context,
)
from drivesim.pipelines.ego_warp import BetweenFrame, anchor_colours, ego_warped_frames, warped_between
from drivesim.pipelines.errors import GenerateError
from drivesim.pipelines.plan import Chunk, RolloutPlan
from drivesim.scenario.timeline import Timeline

log = logging.getLogger(__name__)

INTERPOLATION_FACTOR = 4
INIT_GUESSES = ("given", "ego_warp")


@dataclass
class StageModel:
    """One diffusion stage: its UNet, the frames it runs on, its context-noise level and stage id."""

    unet: VideoUNet
    frames: int
    context_noise_level: float = 0.0
    stage_ids: tuple[int, ...] = (0, 1)  # per interpolation pass (interpolation only)
    sampler: SamplerSettings | None = None  # this stage's own steps / guidance (None: the engine's)
    anchor_to_given: bool = False  # denoises the difference to each frame's last given frame (stage config)

    @property
    def supports(self) -> Supports:
        return Supports.of(self.unet)


@dataclass
class SamplerSettings:
    name: str = "ddim"
    steps: int = 25
    eta: float = 0.0
    timestep_spacing: str | None = "trailing"
    guidance: dict[str, float] = field(default_factory=dict)
    guidance_mode: str = "composed"
    max_batch: int = 0
    init_strength: float = 1.0
    noise_correlation: float = 0.0  # share of the initial noise common to a call's frames (frame_correlated_noise)
    init_guess: str = "given"  # the SDEdit start of new keys: "given" (context_init) | "ego_warp" (ego_warp.py)
    walls_m: float | None = None  # ego_warp: side walls at this lateral distance (None: ground plane only)
    warp_boxes: bool = False  # ego_warp: the agents' boxes move with their tracks (else they lie on the ground)
    colour_anchor: float = 0.0  # ego_warp: share of the way each guess's colour statistics move to the first key's
    colour_anchor_bands: int = 1  # colour_anchor per horizontal band of rows (1: global)


class SamplerSettingsError(GenerateError):
    """A sampler setting the engine cannot run (one line naming the field)."""


@dataclass
class ChunkResult:
    keys: dict[int, Tensor]  # the keys this chunk made, (1, C, h, w) each
    frames: np.ndarray  # uint8 (n, H, W, 3): the decoded output frames it finalises
    seconds: dict[str, float]


def keys_kept(keys: Mapping[int, Tensor], context_frames: int) -> dict[int, Tensor]:
    """What a rollout keeps of its keys after a chunk: the next chunk's context and the first key (the
    reference of `sampler.colour_anchor`)."""
    kept = sorted(set(sorted(keys)[-max(context_frames, 1):]) | {min(keys)})
    return {j: keys[j] for j in kept}


def chunk_generator(seed: int, chunk: int) -> torch.Generator:
    """The only randomness of chunk `chunk`: a function of (seed, chunk), so a resumed run matches."""
    state = int(np.random.SeedSequence([int(seed), int(chunk)]).generate_state(1, dtype=np.uint64)[0])
    return torch.Generator().manual_seed(state & ((1 << 63) - 1))


@dataclass
class Engine:
    prediction: StageModel
    vae: VideoVAE
    schedule: Mapping[str, object]
    sampler: SamplerSettings
    fps: float  # key-frame rate (the prediction model's data)
    latent_size: tuple[int, int]
    image: StageModel | None = None  # None: the prediction UNet run image-only makes the first key
    interpolation: StageModel | None = None
    interpolation_passes: int = 1
    context_frames: int = 2
    decode_chunk: int = 8
    device: str = "cpu"
    prediction_window: int | None = None  # frames of one prediction call; None: the export's clip length
    _warned_pass: bool = field(default=False, repr=False)
    _warned_inert: bool = field(default=False, repr=False)

    @property
    def factor(self) -> int:
        return INTERPOLATION_FACTOR ** self.interpolation_passes if self.interpolation is not None else 1

    @property
    def out_fps(self) -> float:
        return self.fps * self.factor

    @property
    def latent_channels(self) -> int:
        return int(self.prediction.unet.in_channels)

    def validate(self) -> None:
        """Fail early (before anything is written) on sampler settings the first chunk would reject."""
        named = [("sampler", self.sampler)] + [("interpolation_sampler" if m is self.interpolation else "sampler", m.sampler)
                                               for m in (self.prediction, self.image, self.interpolation)
                                               if m is not None and m.sampler is not None]
        for name, s in named:
            try:
                make_scheduler(s.name, self.schedule, s.timestep_spacing, s.eta)
                GuidancePlan.build(VideoCondition(), s.guidance, s.guidance_mode)
            except ValueError as exc:
                raise SamplerSettingsError(str(exc).replace("sampler.", f"{name}.", 1)) from exc
            if s.steps < 1:
                raise SamplerSettingsError(f"{name}.steps must be >= 1, got {s.steps}")
            if not 0.0 < s.init_strength <= 1.0:
                raise SamplerSettingsError(f"{name}.init_strength must lie in (0, 1], got {s.init_strength}")
            if not 0.0 <= s.noise_correlation < 1.0:
                raise SamplerSettingsError(f"{name}.noise_correlation must lie in [0, 1), got {s.noise_correlation}")
            if s.init_guess not in INIT_GUESSES:
                raise SamplerSettingsError(f"{name}.init_guess must be one of {', '.join(INIT_GUESSES)}, "
                                           f"got {s.init_guess!r}")
            if not 0.0 <= s.colour_anchor <= 1.0:
                raise SamplerSettingsError(f"{name}.colour_anchor must lie in [0, 1], got {s.colour_anchor}")
            if name == "interpolation_sampler" and (s.colour_anchor > 0.0 or s.colour_anchor_bands != 1):
                raise SamplerSettingsError("interpolation_sampler.colour_anchor applies to the prediction calls only "
                                           "(sampler.colour_anchor, sampler.colour_anchor_bands): the in-between "
                                           "frames blend anchored keys")
            if not 1 <= s.colour_anchor_bands <= self.latent_size[0]:  # finer bands than latent rows say nothing
                raise SamplerSettingsError(f"{name}.colour_anchor_bands must lie in [1, {self.latent_size[0]}] (the "
                                           f"latent rows), got {s.colour_anchor_bands}")
            if s.walls_m is not None and not s.walls_m > 0.0:
                raise SamplerSettingsError(f"{name}.walls_m must be > 0 (or null: no walls), got {s.walls_m}")
            if s.init_guess != "given" and s.init_strength >= 1.0 and not self._warned_inert:
                log.warning("%s.init_guess=%s does nothing at init_strength=1 (sampling starts from pure noise)",
                            name, s.init_guess)
                self._warned_inert = True
            if s.init_guess != "ego_warp" and (s.warp_boxes or s.colour_anchor > 0.0) and not self._warned_inert:
                log.warning("%s.warp_boxes / %s.colour_anchor do nothing without %s.init_guess=ego_warp",
                            name, name, name)
                self._warned_inert = True
        p = self.prediction
        if p.anchor_to_given and float((p.sampler or self.sampler).guidance.get("context", 1.0)) != 1.0:
            raise SamplerSettingsError("sampler.guidance.context: this prediction model denoises the difference to "
                                       "its last given frame (stage.anchor_to_given), so a branch without context "
                                       "is not comparable; guide other conditions or drop context guidance")
        if self.interpolation is not None and ((self.interpolation.frames - 1) % INTERPOLATION_FACTOR
                                               or self.interpolation.frames < INTERPOLATION_FACTOR + 1):
            raise GenerateError(f"the interpolation model runs on {self.interpolation.frames} frames; "
                             f"x{INTERPOLATION_FACTOR} needs {INTERPOLATION_FACTOR}k+1 frames")
        w = self.prediction_window
        if w is not None and not self.context_frames < w <= self.prediction.frames:
            raise GenerateError(f"prediction_window={w}: must lie in [{self.context_frames + 1}, "
                                f"{self.prediction.frames}] (more than context_frames={self.context_frames}, at most "
                                f"the prediction export's {self.prediction.frames} frames)")
        self.plan(1)

    def plan(self, frames: int, given: int = 0) -> RolloutPlan:
        return RolloutPlan(frames=frames, out_fps=self.out_fps, factor=self.factor, given=given,
                           window=self.prediction_window or self.prediction.frames, context=self.context_frames)

    # ------------------------------------------------------------------ one chunk
    @torch.no_grad()
    def run_chunk(self, chunk: Chunk, plan: RolloutPlan, timeline: Timeline, scene: SceneInputs,
                  keys: Mapping[int, Tensor], seed: int) -> ChunkResult:
        gen = chunk_generator(seed, chunk.index)
        timings: dict[str, float] = {}
        clock = _Clock(timings)
        with clock("image" if chunk.kind == "image" else "prediction"):
            new = self._image_key(plan, timeline, scene, gen) if chunk.kind == "image" else \
                self._predict(chunk, plan, timeline, scene, keys, gen)
        if chunk.kind == "image":
            dense, base = new[0][:, None], plan.key_output(0) - 1  # output 0 is key 0 itself
            seq = dense
        else:
            prev = chunk.context_keys[-1]
            seq = torch.stack([keys[prev]] + [new[j] for j in chunk.new_keys if j <= plan.last_key], dim=1)
            base = plan.key_output(prev)
            if self.interpolation is not None:
                with clock("interpolation"):
                    for p in range(self.interpolation_passes):
                        seq = self._interpolate(seq, p, base, plan, timeline, scene, gen)
            seq = seq[:, 1:]
        start, stop = chunk.outputs
        first = base + 1
        latents = seq[:, start - first:stop - first]
        with clock("decode"):
            frames = self._decode(latents)
        return ChunkResult(keys=new, frames=frames, seconds=timings)

    def _sample(self, stage: StageModel, cond: VideoCondition, frames: int, scene: SceneInputs,
                gen: torch.Generator, given: GivenFrames | None = None, batch: int = 1,
                init: Tensor | None = None) -> Tensor:
        h, w = self.latent_size
        s = stage.sampler or self.sampler
        noise = torch.randn(batch, frames, self.latent_channels, h, w, generator=gen)
        noise = frame_correlated_noise(noise, s.noise_correlation, gen).to(self.device)
        scheduler = make_scheduler(s.name, self.schedule, s.timestep_spacing, s.eta)
        denoiser = GuidedDenoiser(in_model_dtype(stage.unet), s.guidance, s.guidance_mode, scene.null_text, s.max_batch)
        if init is None and given is not None and s.init_strength < 1.0:
            init = context_init(given)
        return sample_video(denoiser, scheduler, noise, cond, s.steps, given, gen, init, s.init_strength)

    def _image_key(self, plan: RolloutPlan, timeline: Timeline, scene: SceneInputs,
                   gen: torch.Generator) -> dict[int, Tensor]:
        stage = self.image or self.prediction
        cond = frame_condition([timeline.at(plan.key_time(0))], stage.supports, scene, self.device)
        cond.image_only = self.image is None  # the prediction UNet with its temporal layers bypassed
        out = self._sample(stage, cond, 1, scene, gen)
        return {0: out[:, 0]}

    def _predict(self, chunk: Chunk, plan: RolloutPlan, timeline: Timeline, scene: SceneInputs,
                 keys: Mapping[int, Tensor], gen: torch.Generator) -> dict[int, Tensor]:
        stage = self.prediction
        js = chunk.context_keys + chunk.new_keys
        cond = frame_condition(timeline.frames([plan.key_time(j) for j in js]), stage.supports, scene, self.device)
        given = self._given([keys[j] for j in chunk.context_keys], len(js), [0])
        cond = with_context(cond, given.latents, given.mask, stage.supports, stage.context_noise_level, gen)
        init = self._ego_warp_init(chunk, plan, timeline, keys, given)
        if stage.anchor_to_given:
            anchor = given_anchor(given.latents, given.mask)
            out = self._sample(stage, cond, len(js), scene, gen, GivenFrames(given.latents - anchor, given.mask),
                               init=None if init is None else init - anchor) + anchor
        else:
            out = self._sample(stage, cond, len(js), scene, gen, given, init=init)
        s = len(chunk.context_keys)
        return {j: out[:, s + i] for i, j in enumerate(chunk.new_keys)}

    def _ego_warp_init(self, chunk: Chunk, plan: RolloutPlan, timeline: Timeline, keys: Mapping[int, Tensor],
                       given: GivenFrames) -> Tensor | None:
        """`sampler.init_guess=ego_warp`: the SDEdit start of each new key is the last given key warped by the
        ego motion up to its time (keys of unknown ego motion keep the plain guess); None: the plain guess."""
        s = self.prediction.sampler or self.sampler
        if s.init_guess != "ego_warp" or s.init_strength >= 1.0:
            return None
        init = context_init(given)
        last = chunk.context_keys[-1]
        frame = self.vae.decode_video(keys[last][:, None].to(self.device), 1)[:, 0].float().clamp(-1, 1)
        warped = ego_warped_frames(frame, timeline, plan.key_time(last),
                                   [plan.key_time(j) for j in chunk.new_keys], s.walls_m, s.warp_boxes)
        if s.colour_anchor > 0.0:  # the rollout keeps its first key for this (rollout.py)
            first = self.vae.decode_video(keys[min(keys)][:, None].to(self.device), 1)[:, 0].float().clamp(-1, 1)
            warped = [None if f is None else anchor_colours(f, first, s.colour_anchor, s.colour_anchor_bands)
                      for f in warped]
        known = [i for i, f in enumerate(warped) if f is not None]
        if known:
            pixels = torch.stack([warped[i] for i in known], dim=1)  # type: ignore[misc]
            latents = self.vae.encode_video(pixels.to(self.device, self.vae.vae.dtype), self.decode_chunk).float()
            offset = len(chunk.context_keys)
            for n, i in enumerate(known):
                init[:, offset + i] = latents[:, n].to(init.device)
        return init

    def _ego_warp_between(self, seq: Tensor, idx: list[list[int]], starts: list[int], base: int, spacing_out: int,
                          plan: RolloutPlan, timeline: Timeline, given: GivenFrames) -> Tensor | None:
        """`interpolation_sampler.init_guess=ego_warp`: each in-between frame starts from its two keys, each
        warped by the ego motion to the frame's time, blended in pixels by distance in time where both saw it
        (`blend_warps`; motion-compensated, not a cross-fade); None: the plain blend of the keys' latents."""
        stage = self.interpolation
        assert stage is not None
        s = stage.sampler or self.sampler
        if s.init_guess != "ego_warp" or s.init_strength >= 1.0:
            return None
        f = INTERPOLATION_FACTOR
        init = context_init(given)
        # A temporal decoder would read keys far apart as consecutive frames: it decodes each key on its own.
        chunk = 1 if self.vae.temporal_decoder is not None else self.decode_chunk
        frames = self.vae.decode_video(seq.to(self.device), chunk)[0].float().clamp(-1, 1)

        def time(output_frame: float) -> float:
            return output_frame / plan.out_fps

        wanted, where = [], []
        for b, (g0, ix) in enumerate(zip(starts, idx)):
            for i in range(len(ix) - 1):
                ta, tb = time(base + spacing_out * f * ix[i]), time(base + spacing_out * f * ix[i + 1])
                if ix[i + 1] == ix[i]:  # past the chunk's last key (dropped frames): the plain guess
                    continue
                for r in range(1, f):
                    t = time(base + spacing_out * (f * g0 + f * i + r))
                    wanted.append(BetweenFrame(ix[i], ix[i + 1], ta, tb, t, r / f))
                    where.append((b, f * i + r))
        made = warped_between(frames, timeline, wanted, s.walls_m, s.warp_boxes)
        guesses = [g for g in made if g is not None]
        where = [w for w, g in zip(where, made) if g is not None]
        if guesses:
            pixels = torch.cat(guesses)[None].clamp(-1, 1)
            latents = self.vae.encode_video(pixels.to(self.device, self.vae.vae.dtype), self.decode_chunk).float()[0]
            for n, (b, q) in enumerate(where):
                init[b, q] = latents[n].to(init.device)
        return init

    def _given(self, latents: list[Tensor], frames: int, positions: list[int]) -> GivenFrames:
        """Given latents at `positions` (consecutive from each start) of a `frames`-long window."""
        c, (h, w) = self.latent_channels, self.latent_size
        full = torch.zeros(1, frames, c, h, w, device=self.device)
        mask = torch.zeros(1, frames, device=self.device)
        pos = [positions[0] + i for i in range(len(latents))] if len(positions) == 1 else positions
        for p, z in zip(pos, latents):
            full[:, p] = z
            mask[:, p] = 1.0
        return GivenFrames(full, mask)

    def _interpolate(self, seq: Tensor, p: int, base: int, plan: RolloutPlan, timeline: Timeline,
                     scene: SceneInputs, gen: torch.Generator) -> Tensor:
        """One x4 pass over `seq` (1, n+1, ...) whose element 0 sits at output frame `base`."""
        stage = self.interpolation
        assert stage is not None
        f = INTERPOLATION_FACTOR
        if (stage.frames - 1) % f or stage.frames < f + 1:
            raise GenerateError(f"the interpolation model runs on {stage.frames} frames; x{f} needs {f}k+1 frames")
        per_call = (stage.frames - 1) // f  # gaps per call
        spacing_out = plan.factor // f ** (p + 1)  # output frames between the new sequence's elements
        n = seq.shape[1] - 1
        starts = list(range(0, n, per_call))
        # The calls of one chunk are independent: one batched UNet call (a batch of 3 costs about 2 alone on CPU).
        windows = [timeline.frames([(base + spacing_out * (f * g0 + k)) / plan.out_fps for k in range(stage.frames)])
                   for g0 in starts]
        idx = [[min(g0 + i, n) for i in range(per_call + 1)] for g0 in starts]  # past the end: the last key again
        calls = [self._given([seq[:, i] for i in ix], stage.frames, [f * i for i in range(per_call + 1)]) for ix in idx]
        given = GivenFrames(torch.cat([g.latents for g in calls]), torch.cat([g.mask for g in calls]))
        cond = batch_condition(windows, stage.supports, scene, self.device)
        cond = with_context(cond, given.latents, given.mask, stage.supports, stage.context_noise_level, gen)
        if stage.supports.stage:
            if p >= len(stage.stage_ids) and not self._warned_pass:
                log.warning("interpolation pass %d reuses stage id %d: the export was trained for one pass only",
                            p + 1, stage.stage_ids[-1])
                self._warned_pass = True
            cond.stage_id = torch.full((len(starts),), stage.stage_ids[min(p, len(stage.stage_ids) - 1)],
                                       dtype=torch.long, device=self.device)
        init = self._ego_warp_between(seq, idx, starts, base, spacing_out, plan, timeline, given)
        out = self._sample(stage, cond, stage.frames, scene, gen, given, batch=len(starts), init=init)
        parts = [seq[:, :1]] + [out[b:b + 1, 1:f * min(per_call, n - g0) + 1] for b, g0 in enumerate(starts)]
        return torch.cat(parts, dim=1)

    def _decode(self, latents: Tensor) -> np.ndarray:
        if latents.shape[1] == 0:
            return np.zeros((0, 0, 0, 3), dtype=np.uint8)
        video = self.vae.decode_video(latents.to(self.device), self.decode_chunk)[0]
        pixels = ((video.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return pixels.permute(0, 2, 3, 1).cpu().numpy()


def in_model_dtype(unet: VideoUNet) -> Callable[[Tensor, Tensor, VideoCondition], Tensor]:
    """The UNet called in its own dtype; the sampler's maths stays float32."""
    def model(x: Tensor, t: Tensor, cond: VideoCondition) -> Tensor:
        dtype = unet.dtype
        if dtype == torch.float32:
            return unet(x, t, cond)
        return unet(x.to(dtype), t, cond.to(x.device, dtype)).float()

    return model


class _Clock:
    """`with clock("part"):` adds the block's wall seconds to `into["part"]`."""

    def __init__(self, into: dict[str, float]) -> None:
        self.into = into

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.into[name] = self.into.get(name, 0.0) + time.perf_counter() - start
