"""Check and resolve a `drivesim train` config before anything is written.

Order (each failure is one line, exit 2, nothing written): missing paths, then the parents' markers,
stages and architectures, then data/model consistency (frames, size and the autoencoder's
downscale, latent channels, prediction type against the parent).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf, open_dict

from drivesim.exports import MARKER, Export, ExportError, read_export

log = logging.getLogger(__name__)
STAGE_ALIASES = {"prediction": "temporal"}
TRAINABLE_STAGES = ("autoencoder", "image", "temporal", "interpolation", "upsampler", "decoder", "lora")
# The export stages `model.pretrained` may name, per training stage (default: an image export). A video stage
# may also go on from an export of its own stage (fine-tuning; the new export keeps that export's parents).
PARENT_STAGES: dict[str, tuple[str, ...]] = {"lora": ("image", "temporal"), "upsampler": ("image", "temporal"),
                                             "decoder": ("image", "temporal", "interpolation"),
                                             "temporal": ("image", "temporal"),
                                             "interpolation": ("image", "interpolation")}


class TrainConfigError(ValueError):
    """A train config that cannot run: one line naming the key or path."""


# What a frame of a video stage means: a run going on from an export must keep these as they were.
SAME_STAGE_KEYS = ("anchor_to_given", "interpolation_factor", "stage_id")


SCHEDULE_FIELDS = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas",
                   "rescale_betas_zero_snr")


def _check_pipeline_schedule(weights: Path, model: DictConfig) -> None:
    """SD weights in a diffusers pipeline folder come with the noise schedule and prediction type they were trained
    with (`scheduler/scheduler_config.json`): a run that disagrees would fine-tune, say, a v-prediction model as
    an eps one. One line naming the field to set."""
    from drivesim.models.loading import pipeline_scheduler_config

    if not weights.is_dir():  # a single file: the scheduler of its config folder, if one was given
        if not model.get("pretrained_config"):
            return
        weights = Path(model.pretrained_config)
    found = pipeline_scheduler_config(weights)
    if found is None:
        return
    try:
        saved = json.loads(found.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TrainConfigError(f"{found}: not a JSON scheduler config ({exc})") from None
    if not isinstance(saved, dict):
        raise TrainConfigError(f"{found}: not a JSON object")
    if "prediction_type" in saved and saved["prediction_type"] != model.prediction_type:
        raise TrainConfigError(f"model.prediction_type={model.prediction_type} but {found} has "
                               f"{saved['prediction_type']}: set model.prediction_type={saved['prediction_type']}")
    schedule = OmegaConf.to_container(model.noise_schedule, resolve=True) if model.get("noise_schedule") else {}
    assert isinstance(schedule, dict)
    from diffusers import DDPMScheduler

    defaults = dict(cast(Any, DDPMScheduler()).config)  # what the objective builds a key the preset leaves out with
    for key in SCHEDULE_FIELDS:
        if key not in saved:
            continue
        ours = schedule.get(key, defaults.get(key))
        same = (math.isclose(float(ours), float(saved[key]), rel_tol=1e-6)
                if isinstance(ours, (int, float)) and not isinstance(ours, bool)
                and isinstance(saved[key], (int, float)) and not isinstance(saved[key], bool) else ours == saved[key])
        if not same:
            plus = "" if key in schedule else "+"  # a key the preset's schedule lacks is added with Hydra's +
            raise TrainConfigError(f"model.noise_schedule.{key}={ours!r} but {found} has {saved[key]!r}: "
                                   f"set {plus}model.noise_schedule.{key}={json.dumps(saved[key])}")


def _check_same_stage_parent(parent: Export, cfg: DictConfig) -> None:
    """A run going on from an export of its own stage keeps that export's lineage (checked here, before
    anything trains, as the new export will record it) and the settings that define its frames."""
    for role in parent.parents:
        try:
            parent.check_parent(role)
        except ExportError as exc:
            raise TrainConfigError(f"model.pretrained: {' '.join(str(exc).split())}") from None
    theirs = parent.config().get("stage") or {}
    for key in SAME_STAGE_KEYS:
        mine, was = cfg.stage.get(key), theirs.get(key)
        if was is not None and mine != was:
            raise TrainConfigError(f"stage.{key}={mine} but model.pretrained={parent.path} was trained with {was}: "
                                   "going on from an export keeps it")
    if abs(float(cfg.data.fps) - parent.fps) > 1e-6:
        raise TrainConfigError(f"data.fps={cfg.data.fps} but model.pretrained={parent.path} was trained at "
                               f"{parent.fps:g} fps: going on from an export keeps it")


@dataclass
class Resolved:
    """The stage's inputs, checked: the resolved config and its parents."""

    cfg: DictConfig
    stage: str
    autoencoder_path: Path | None  # the diffusers AutoencoderKL folder latents come from
    autoencoder_parent: Path | None  # what the export records as its autoencoder parent
    image_parent: Export | None  # the export a stage starts from (PARENT_STAGES: image, or another per stage)
    sd_weights: str | None  # local SD UNet weights to inflate (no image export)


def stage_name(cfg: DictConfig) -> str:
    name = str(cfg.stage.name)
    name = STAGE_ALIASES.get(name, name)
    if name not in TRAINABLE_STAGES:
        raise TrainConfigError(f"stage={name}: training for this stage is not available yet "
                               f"(choose from {', '.join(TRAINABLE_STAGES)})")
    return name


def _check_exists(key: str, value: str | None) -> None:
    if value and not Path(value).exists():
        raise TrainConfigError(f"{key}={value}: no such file or folder")


def _autoencoder_folder(key: str, path: Path) -> tuple[Path, Path]:
    """(AutoencoderKL folder, parent to record) of an autoencoder export or an SD VAE / pipeline folder."""
    if (path / MARKER).is_file():
        try:
            exp = read_export(path, stage="autoencoder")
        except ExportError as exc:
            raise TrainConfigError(f"{key}: {exc}") from exc
        return exp.autoencoder_path(), exp.path
    from drivesim.models.vae import resolve_vae_folder

    try:
        folder = resolve_vae_folder(path)
    except (FileNotFoundError, ValueError) as exc:
        raise TrainConfigError(f"{key}={path}: not an autoencoder export or SD VAE folder ({exc})") from exc
    return folder, path.resolve()


def _autoencoder_config(folder: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((folder / "config.json").read_text()))
    except (OSError, ValueError) as exc:
        raise TrainConfigError(f"{folder / 'config.json'}: unreadable autoencoder config ({exc})") from exc


def resolve(cfg: DictConfig) -> Resolved:
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[assignment]
    stage = stage_name(cfg)
    model = cfg.model
    # 1. missing paths
    _check_exists("model.vae", model.vae)
    _check_exists("model.pretrained", model.pretrained)
    _check_exists("data.root", cfg.data.get("root"))
    # 2. parents
    ae_path = ae_parent = None
    image_parent: Export | None = None
    sd_weights: str | None = None
    if stage != "autoencoder":
        if model.pretrained and (Path(model.pretrained) / MARKER).is_file():
            try:
                image_parent = read_export(model.pretrained, stage=PARENT_STAGES.get(stage, "image"))
            except ExportError as exc:
                raise TrainConfigError(f"model.pretrained: {exc}") from exc
            if stage == "image":
                raise TrainConfigError("model.pretrained: the image stage starts from SD weights or from scratch, "
                                       "not from an export")
            if image_parent.stage == stage:
                _check_same_stage_parent(image_parent, cfg)
        elif model.pretrained:
            sd_weights = str(model.pretrained)
            _check_pipeline_schedule(Path(sd_weights), model)
        if stage == "lora" and image_parent is None:
            raise TrainConfigError("model.pretrained: the lora stage personalises an image or temporal export; "
                                   "give its folder")
        if model.vae:
            ae_path, ae_parent = _autoencoder_folder("model.vae", Path(model.vae))
        elif image_parent is not None:
            try:
                ae_path = image_parent.autoencoder_path()
            except ExportError as exc:
                raise TrainConfigError(f"model.pretrained: {exc}") from exc
            ae_parent = image_parent.parent_path("autoencoder")
        else:
            raise TrainConfigError(f"model.vae is not set: the {stage} stage needs an autoencoder export or SD VAE "
                                   "folder (or model.pretrained=<image export>)")
        if image_parent is not None:
            if image_parent.model_name != model.name:
                log.warning("model.pretrained was trained as model %s, this run is model %s",
                            image_parent.model_name, model.name)
            if image_parent.prediction_type != model.prediction_type:
                raise TrainConfigError(f"model.prediction_type={model.prediction_type} but the {image_parent.stage} "
                                       f"export {image_parent.path} predicts {image_parent.prediction_type}")
    if stage == "autoencoder":
        from drivesim.training.autoencoder_module import check_colour_options

        check_colour_options(cfg.stage)
    if stage == "autoencoder" and model.vae:
        # Fine-tuning: start from an autoencoder export or SD VAE; its architecture replaces model.autoencoder.
        ae_path, _ = _autoencoder_folder("model.vae", Path(model.vae))
        arch = {k: v for k, v in _autoencoder_config(ae_path).items() if not k.startswith("_")}
        with open_dict(cfg):
            cfg.model.autoencoder = OmegaConf.create(arch)
    # 3. data / model consistency
    with open_dict(cfg):
        _fill_data(cfg, stage, ae_path)
    return Resolved(cfg=cfg, stage=stage, autoencoder_path=ae_path, autoencoder_parent=ae_parent,
                    image_parent=image_parent, sd_weights=sd_weights)


def _fill_data(cfg: DictConfig, stage: str, ae_path: Path | None) -> None:
    model, data = cfg.model, cfg.data
    if model.prediction_type not in ("epsilon", "v_prediction"):
        raise TrainConfigError(f"model.prediction_type={model.prediction_type}: choose epsilon or v_prediction")
    if stage == "autoencoder":
        ae = dict(model.autoencoder or {})
        if not ae:
            raise TrainConfigError(f"model.autoencoder is empty: model {model.name} defines no autoencoder to train")
    else:
        ae = _autoencoder_config(ae_path) if ae_path is not None else {}
    downscale = 2 ** (len(ae.get("block_out_channels", [0])) - 1)
    latent_channels = int(ae.get("latent_channels", model.latent_channels))
    if latent_channels != int(model.latent_channels):
        raise TrainConfigError(f"model.latent_channels={model.latent_channels} but the autoencoder makes "
                               f"{latent_channels}-channel latents")
    want_size = [int(s) * downscale for s in model.latent_size]
    if stage == "lora":
        from drivesim.models.lora import TARGETS

        if str(cfg.stage.lora_targets) not in TARGETS or int(cfg.stage.lora_rank) < 1:
            raise TrainConfigError(f"stage.lora_targets={cfg.stage.lora_targets}, stage.lora_rank="
                                   f"{cfg.stage.lora_rank}: choose targets from {', '.join(TARGETS)} and rank >= 1")
    if stage == "decoder" and bool(cfg.stage.cache_latents):
        raise TrainConfigError("stage.cache_latents=true: the decoder stage trains on frames; set it false")
    if stage == "decoder":
        from drivesim.models.temporal import TEMPORAL_PADDINGS

        if str(cfg.stage.temporal_padding) not in TEMPORAL_PADDINGS:
            raise TrainConfigError(f"stage.temporal_padding={cfg.stage.temporal_padding!r} must be one of "
                                   f"{', '.join(TEMPORAL_PADDINGS)}")
    if stage == "upsampler":
        _check_upsampler_size(cfg, downscale)
    elif data.size is None:
        data.size = want_size
    elif [int(s) for s in data.size] != want_size:
        raise TrainConfigError(f"data.size={list(data.size)} but model.latent_size={list(model.latent_size)} x "
                               f"the autoencoder's downscale {downscale} needs {want_size}")
    factor = int(cfg.stage.interpolation_factor)
    if stage == "interpolation":
        want_frames = factor * max(1, int(model.num_frames) // factor) + 1
    elif stage == "autoencoder":
        want_frames = 1
    else:
        want_frames = int(model.num_frames)
    if data.frames is None:
        data.frames = want_frames
    elif stage == "interpolation" and (int(data.frames) - 1) % factor != 0:
        raise TrainConfigError(f"data.frames={data.frames}: the interpolation window is key frames plus "
                               f"{factor - 1} between each pair, i.e. {factor}k + 1 frames (e.g. {want_frames})")
    elif stage in ("temporal",) and int(data.frames) != int(model.num_frames):
        raise TrainConfigError(f"data.frames={data.frames} but model.num_frames={model.num_frames}")
    if float(data.fps) <= 0:
        raise TrainConfigError(f"data.fps={data.fps} must be > 0")
    power = float(cfg.stage.get("timestep_power", 1.0))
    if not 0.0 < power <= 4.0:
        raise TrainConfigError(f"stage.timestep_power={power} must lie in (0, 4] (1: uniform timesteps)")
    if bool(cfg.stage.get("anchor_to_given", False)) and stage != "temporal":
        raise TrainConfigError(f"stage.anchor_to_given: only the temporal (prediction) stage has an anchor, "
                               f"not {stage}")
    blend = bool((model.get("conditioning") or {}).get("context_blend", False))
    if blend and stage not in ("temporal", "interpolation"):
        raise TrainConfigError(f"model.conditioning.context_blend: only the prediction and interpolation stages blend "
                               f"towards given frames, not {stage}")
    if blend and bool(cfg.stage.get("anchor_to_given", False)):
        raise TrainConfigError("model.conditioning.context_blend with stage.anchor_to_given: the blend's guess is "
                               "a whole frame, the anchored model denoises a difference; choose one")
    correlation = float(cfg.stage.get("noise_correlation", 0.0))
    if not 0.0 <= correlation < 1.0:
        raise TrainConfigError(f"stage.noise_correlation={correlation} must lie in [0, 1) (0: independent noise)")
    if correlation > 0 and stage not in ("temporal", "interpolation"):
        raise TrainConfigError(f"stage.noise_correlation: only the prediction and interpolation stages denoise "
                               f"clips with one noise level, not {stage}")
    if float(cfg.stage.get("context_blend_lr", 0.01)) <= 0:
        raise TrainConfigError(f"stage.context_blend_lr={cfg.stage.context_blend_lr} must be > 0")
    if stage == "temporal":
        choices = list(cfg.stage.context_frames)
        if not choices or min(choices) < 0 or max(choices) >= int(data.frames):
            raise TrainConfigError(f"stage.context_frames={choices} must lie in [0, data.frames - 1 = "
                                   f"{int(data.frames) - 1}]")


def _check_upsampler_size(cfg: DictConfig, downscale: int) -> None:
    """data.size is the high-res frame (default: upscale x the low-res model's frame); patches are
    model.latent_size latents, so the size must be a multiple of upscale x downscale and hold a patch."""
    model, data, up = cfg.model, cfg.data, int(cfg.stage.upscale)
    if up < 1:
        raise TrainConfigError(f"stage.upscale={up} must be >= 1")
    from drivesim.training.upsampler_module import check_lowres_input

    mode = str(cfg.stage.lowres_input)
    try:
        check_lowres_input(mode)
    except ValueError as exc:
        raise TrainConfigError(f"stage.lowres_input: {exc}") from exc
    if bool(cfg.stage.guess_blend) and mode != "upscaled":
        raise TrainConfigError("stage.guess_blend needs stage.lowres_input=upscaled (the guess must be in the "
                               "output's latent space)")
    if data.size is None:
        data.size = [int(s) * downscale * up for s in model.latent_size]
    size = [int(s) for s in data.size]
    step = up * downscale
    if size[0] % step or size[1] % step:
        raise TrainConfigError(f"data.size={size} must be a multiple of stage.upscale x the autoencoder's downscale "
                               f"({step}) for the upsampler")
    patch = [int(s) * downscale for s in model.latent_size]
    if patch[0] > size[0] or patch[1] > size[1]:
        raise TrainConfigError(f"model.latent_size={list(model.latent_size)} (patches of {patch} pixels) is larger "
                               f"than data.size={size}")
