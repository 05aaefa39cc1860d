"""Exports -> an `Engine`: the thin layer between `drivesim.exports` and the rollout engine.

`checkpoint=` is a temporal (prediction) export, whose image and autoencoder parents are found
through its marker, or a cascade folder holding one export per stage (then every stage in it is
used). `interpolation=` adds an interpolation export.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from drivesim.exports import Export, find_cascade, read_export
from drivesim.pipelines.engine import Engine, SamplerSettings, StageModel
from drivesim.pipelines.errors import GenerateError

log = logging.getLogger(__name__)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
PRECISIONS = (*DTYPES, "auto")


def native_bf16(device: str) -> bool:
    """Whether `device` computes bfloat16 natively: a CUDA GPU of compute capability 8.0 or later, or a CPU with
    AVX512-BF16 or AMX (elsewhere PyTorch emulates it, slower than float32)."""
    if device.startswith("cuda"):  # Ampere (8.0) and later; is_bf16_supported() also counts emulation
        return bool(torch.cuda.is_available() and torch.cuda.get_device_capability(torch.device(device)) >= (8, 0))
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(bool(probe()) for probe in probes if probe is not None)


def resolve_precision(precision: str, device: str) -> str:
    """`precision=auto`: bf16 where `device` computes it natively (on this project's AMX CPU the tiny UNet runs
    1.9x faster and the demo generates in ~0.7x the time; the sampler's maths stays float32), else fp32.
    Other values are kept as given."""
    if precision not in PRECISIONS:
        raise GenerateError(f"precision={precision}: choose from {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    resolved = "bf16" if native_bf16(device) else "fp32"
    log.info("precision=auto: %s on %s", resolved, device)
    return resolved


@dataclass
class LoadedCascade:
    engine: Engine
    prediction: Export
    size: tuple[int, int]  # output frame (H, W) pixels
    stages: dict[str, str]  # stage -> export path (for run.json)
    upsampler: Any | None = None  # drivesim.pipelines.upsample.Upsampler (video_hr.mp4)
    precision: str = "fp32"  # the models' precision (`precision=auto` resolved)

    @property
    def has_text(self) -> bool:
        """Whether the prediction model takes text (known without loading the encoder)."""
        return self.prediction.has_text

    @cached_property
    def text_encoder(self) -> Any | None:
        """The text encoder, loaded on first use: a drive without text never needs it."""
        text = self.prediction.text_encoder()
        return None if text is None else text.to(self.engine.device).eval()


def _stage_exports(checkpoint: str, interpolation: str | None, **extra: str | None) -> dict[str, Export]:
    path = Path(checkpoint)
    exports = find_cascade(path)
    if "temporal" not in exports:
        found = ", ".join(sorted(exports)) or "none"
        raise GenerateError(f"checkpoint={checkpoint}: needs a temporal (prediction) export or a cascade folder "
                            f"holding one (found: {found})")
    prediction = exports["temporal"]
    if "image" not in exports:
        parent = prediction.parent("image")
        if parent is not None:
            exports["image"] = parent
    if interpolation is not None:
        exports["interpolation"] = read_export(interpolation, stage="interpolation")
    for stage, given in extra.items():  # upsampler=, decoder=, lora= (else the cascade folder's own)
        if given is not None:
            exports[stage] = read_export(given, stage=stage)
    return exports


def context_noise_mean(export: Export) -> float:
    """The training mean of the context noise level: context_noise_max / 2 of the stage (uniform draw)."""
    try:
        stage = export.config().get("stage") or {}
    except (OSError, ValueError):
        return 0.0
    return float(stage.get("context_noise_max", 0.0) or 0.0) / 2.0


def anchor_to_given(export: Export) -> bool:
    """Whether the export denoises the difference to the last given frame (`stage.anchor_to_given`). Unlike the
    other stage settings read here, guessing wrong would make every frame wrong: an unreadable config is an error."""
    try:
        stage = export.config().get("stage") or {}
    except (OSError, ValueError) as exc:
        raise GenerateError(f"{export.path}: its config cannot be read ({exc}): cannot tell how to sample it") from exc
    return bool(stage.get("anchor_to_given", False))


def trained_stage_ids(export: Export) -> tuple[int, ...]:
    """The stage id the interpolation export was trained with. Training uses one id per export, so a
    second x4 pass reuses it (at 4x the frame rate it was trained at; logged when it runs): feeding
    an id the model never saw would be worse."""
    try:
        first = int((export.config().get("stage") or {}).get("stage_id", 0))
    except (OSError, ValueError):
        first = 0
    return (first,)


def sampler_settings(sampler: Any) -> SamplerSettings:
    """A `sampler` config node (conf/sampler/, schema SamplerConfig) as the engine's settings."""
    return SamplerSettings(
        name=str(sampler.name), steps=int(sampler.steps), eta=float(sampler.eta),
        timestep_spacing=sampler.timestep_spacing, guidance={k: float(v) for k, v in dict(sampler.guidance).items()},
        guidance_mode=str(sampler.guidance_mode), max_batch=int(sampler.max_batch),
        init_strength=float(sampler.get("init_strength", 1.0)),
        noise_correlation=float(sampler.get("noise_correlation", 0.0)),
        init_guess=str(sampler.get("init_guess", "given")),
        walls_m=None if sampler.get("walls_m") is None else float(sampler.walls_m),
        warp_boxes=bool(sampler.get("warp_boxes", False)),
        colour_anchor=float(sampler.get("colour_anchor", 0.0)),
        colour_anchor_bands=int(sampler.get("colour_anchor_bands", 1)))


def load_cascade(checkpoint: str | None, interpolation: str | None, sampler: Any, *, passes: int = 1,
                 device: str = "cpu", precision: str = "fp32", context_frames: int = 2,
                 decode_chunk: int = 8, upsampler: str | None = None, decoder: str | None = None,
                 lora: str | None = None, prediction_window: int | None = None) -> LoadedCascade:
    """Read the exports, build every stage's model on `device`, and the engine over them."""
    if not checkpoint:
        raise GenerateError("checkpoint= is required: a temporal (prediction) export or a cascade folder")
    precision = resolve_precision(precision, device)
    if passes not in (1, 2):
        raise GenerateError(f"interpolation_passes={passes}: 1 (x4) or 2 (x16)")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise GenerateError(f"device={device}: CUDA is not available on this machine")
    exports = _stage_exports(checkpoint, interpolation, upsampler=upsampler, decoder=decoder, lora=lora)
    prediction = exports["temporal"]
    dtype = DTYPES[precision]
    level = sampler.context_noise_level
    from drivesim.pipelines.cascade_stages import apply_lora, check_same_autoencoder

    for name in ("upsampler", "decoder", "image", "interpolation"):
        if name in exports:
            check_same_autoencoder(exports[name], prediction, name)
    if "interpolation" in exports and abs(exports["interpolation"].fps - 4 * prediction.fps) > 1e-6:
        raise GenerateError(f"{exports['interpolation'].path}: the interpolation export was trained on "
                            f"{exports['interpolation'].fps:g} fps clips; x4 over this {prediction.fps:g} fps "
                            f"prediction export needs {4 * prediction.fps:g} fps")
    lora_export = exports.get("lora")

    def stage(export: Export) -> StageModel:
        unet = apply_lora(export.build_unet(), export, lora_export, required=export is prediction)
        unet = unet.to(device=device, dtype=dtype)
        if export.stage == "image":  # one frame at a time, no context
            return StageModel(unet, 1, 0.0)
        noise = context_noise_mean(export) if level is None else float(level)
        model = StageModel(unet, int(export.frames), noise, trained_stage_ids(export), anchor_to_given=anchor_to_given(export))
        if not model.supports.context:  # rollouts and interpolation continue given frames
            raise GenerateError(f"{export.path}: this {export.stage} export has no context encoder "
                                "(model.conditioning.context was off in training): it cannot continue a rollout")
        return model

    vae = exports.get("decoder", prediction).load_vae().to(device=device, dtype=dtype).eval()
    size = (int(prediction.size[0]), int(prediction.size[1]))
    down = int(vae.downscale)
    if size[0] % down or size[1] % down:
        raise GenerateError(f"{prediction.path}: frame size {list(size)} is not a multiple of the autoencoder's "
                            f"downscale {down}")
    settings = sampler_settings(sampler)
    engine = Engine(
        prediction=stage(prediction), vae=vae, schedule=prediction.scheduler_config(), sampler=settings,
        fps=float(prediction.fps), latent_size=(size[0] // down, size[1] // down),
        image=stage(exports["image"]) if "image" in exports else None,
        interpolation=stage(exports["interpolation"]) if "interpolation" in exports else None,
        interpolation_passes=passes, context_frames=context_frames, decode_chunk=decode_chunk, device=device,
        prediction_window=prediction_window)
    if engine.image is None:
        log.warning("no image export found beside %s: the prediction model (image-only) makes the first frame",
                    prediction.path)
    up = None
    if "upsampler" in exports:
        from drivesim.pipelines.cascade_stages import load_upsampler

        up = load_upsampler(exports["upsampler"], vae, settings, device, dtype, decode_chunk)
    return LoadedCascade(engine, prediction, size, {k: str(v.path) for k, v in exports.items()}, up, precision)
