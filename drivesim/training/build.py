"""Build a stage's data (cached latents or frames, in the resumable global order) and its module."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from drivesim.data.factory import build_dataset, get_option
from drivesim.exports import folder_digest
from drivesim.training.data import GlobalOrderSampler, PositionedDataset, collate_positioned
from drivesim.training.latent_cache import CachedLatentClips, build_cache, cache_key, default_cache_dir
from drivesim.training.resolve import Resolved, TrainConfigError

log = logging.getLogger(__name__)


class TrainData(L.LightningDataModule):
    """Train / val sets in the global order; the sampler starts where the restored step left off."""

    def __init__(self, resolved: Resolved, train_set: Dataset, val_set: Dataset | None,
                 identity: dict[str, Any]) -> None:
        super().__init__()
        self.cfg = resolved.cfg
        self.train_set, self.val_set = train_set, val_set
        self._identity = identity
        self.batch_size = int(self.cfg.data.batch_size)
        self.workers = int(get_option(self.cfg.data, "num_workers", 0))

    def identity(self) -> dict[str, Any]:
        return dict(self._identity)

    def export_info(self) -> dict[str, Any]:
        """fps, frames, size and camera of the data, recorded in the export's marker."""
        camera: dict[str, Any] = {}
        if len(self.train_set):  # type: ignore[arg-type]
            item = self.train_set[0]
            clip = item[0] if isinstance(item, tuple) else item
            if clip is not None:
                for name in ("intrinsics", "extrinsics"):
                    value = getattr(clip.camera, name)
                    camera[name] = None if value is None else np.asarray(value, float).tolist()
        return {"fps": float(self.cfg.data.fps), "frames": int(self.cfg.data.frames),
                "size": [int(s) for s in self.cfg.data.size], "camera": camera, "dataset": str(self.cfg.data.name)}

    def _loader(self, dataset: Dataset, sampler: GlobalOrderSampler) -> DataLoader:
        return DataLoader(PositionedDataset(dataset), batch_size=self.batch_size, sampler=sampler,  # type: ignore[arg-type]
                          num_workers=self.workers, collate_fn=collate_positioned, persistent_workers=False)

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        assert trainer is not None
        accum = int(self.cfg.trainer.accumulate_grad_batches)
        # global_step is restored before the loaders are built: the resumed run reads on from there.
        sampler = GlobalOrderSampler(len(self.train_set), int(self.cfg.seed), self.batch_size,  # type: ignore[arg-type]
                                     world_size=trainer.world_size, rank=trainer.global_rank,
                                     start_batch=lambda: trainer.global_step * accum,
                                     end_batch=int(self.cfg.trainer.max_steps) * accum)
        return self._loader(self.train_set, sampler)

    def val_dataloader(self) -> DataLoader:
        dataset = self.val_set if self.val_set is not None and len(self.val_set) else self.train_set  # type: ignore[arg-type]
        trainer = self.trainer
        assert trainer is not None
        batches = max(1, int(self.cfg.trainer.val_batches))
        sampler = GlobalOrderSampler(len(dataset), int(self.cfg.seed) + 1, self.batch_size,  # type: ignore[arg-type]
                                     world_size=trainer.world_size, rank=trainer.global_rank, end_batch=batches)
        return self._loader(dataset, sampler)


def _split_sets(resolved: Resolved) -> tuple[Dataset, Dataset | None]:
    data = resolved.cfg.data
    train = build_dataset(data, split=get_option(data, "train_split", "train"))
    try:
        val = build_dataset(data, split=get_option(data, "val_split", "val"))
    except ValueError as exc:  # e.g. a split with no scenes: validation then reads the training set
        log.warning("no validation split (%s)", exc)
        val = None
    return train, val


def load_autoencoder(folder: Path, temporal_decoder: bool = False, temporal_padding: str = "replicate") -> Any:
    from drivesim.models.vae import VideoVAE

    return VideoVAE.from_pretrained(folder, temporal_decoder=temporal_decoder, temporal_padding=temporal_padding)


def build_train_data(resolved: Resolved, out: Path) -> TrainData:
    cfg = resolved.cfg
    train, val = _split_sets(resolved)
    identity: dict[str, Any] = {"dataset": str(cfg.data.name), "root": str(Path(str(cfg.data.root)).resolve()),
                                "train_clips": len(train)}  # type: ignore[arg-type]
    if resolved.stage != "autoencoder" and bool(cfg.stage.cache_latents):
        assert resolved.autoencoder_path is not None
        vae = load_autoencoder(resolved.autoencoder_path)
        digest = folder_digest(resolved.autoencoder_path)
        from drivesim.training.adapter import frames_to_unit

        upscale = int(cfg.stage.upscale) if resolved.stage == "upsampler" else 0
        mode = str(cfg.stage.lowres_input) if upscale else ""
        if upscale:  # both sizes, packed in one tensor; a cache of its own
            digest = f"{digest}+upsampler-x{upscale}" + ("" if mode == "latents" else f"-{mode}")

        def encode(frames: torch.Tensor) -> torch.Tensor:
            if not upscale:
                return vae.encode_video(frames_to_unit(frames))
            from drivesim.training.upsampler_module import encode_pair, pack_pair

            return pack_pair(*encode_pair(vae, frames_to_unit(frames), upscale, mode), upscale)

        root = default_cache_dir(cfg.get("cache_dir")) / "latents"
        sets: list[Dataset | None] = []
        for split, dataset in (("train", train), ("val", val)):
            if dataset is None:
                sets.append(None)
                continue
            key = cache_key(cfg.data, split, digest)
            folder = build_cache(dataset, encode, root / key)
            sets.append(CachedLatentClips(folder))
            identity[f"latent_cache_{split}"] = key
        train_set, val_set = sets
        assert train_set is not None
        return TrainData(resolved, train_set, val_set, identity)
    return TrainData(resolved, train, val, identity)


def build_module(resolved: Resolved, data: TrainData | None = None) -> L.LightningModule:
    cfg = resolved.cfg
    if resolved.stage == "autoencoder":
        from omegaconf import OmegaConf

        from drivesim.training.autoencoder_module import AutoencoderModule, build_autoencoder

        if resolved.autoencoder_path is not None:  # model.vae: fine-tune that autoencoder
            autoencoder = load_autoencoder(resolved.autoencoder_path).vae.train()
        else:
            autoencoder = build_autoencoder(OmegaConf.to_container(cfg.model.autoencoder, resolve=True))  # type: ignore[arg-type]
        module: Any = AutoencoderModule(autoencoder, cfg.stage, cfg.trainer, int(cfg.seed))
    elif resolved.stage == "decoder":
        from drivesim.training.decoder_module import DecoderModule

        assert resolved.autoencoder_path is not None
        vae = load_autoencoder(resolved.autoencoder_path, temporal_decoder=True,
                               temporal_padding=str(cfg.stage.temporal_padding))
        module = DecoderModule(vae, cfg.stage, cfg.trainer, int(cfg.seed))
    else:
        module = _diffusion_module(resolved)
    if data is not None:
        module.dataset_size = len(data.train_set)  # type: ignore[arg-type]
    return module  # type: ignore[no-any-return]


def parent_unet_config(model_cfg: Any, parent: Any) -> dict[str, Any]:
    """The spatial UNet of a stage started from an export is the export's own (its model.json), never the
    preset's: fields the preset sets must agree with it (one line naming the first that does not)."""
    from drivesim.exports import MODEL_FILE
    from drivesim.models.build import first_disagreement

    recorded = dict(parent.read_json(MODEL_FILE)["unet"])
    disagreement = first_disagreement(dict(model_cfg.get("unet") or {}), recorded, only_known=True)
    if disagreement is not None:
        key, value, trained = disagreement
        raise TrainConfigError(f"model.unet.{key}={value!r} but the parent export {parent.path} was trained "
                               f"with {trained!r}: the architecture differs")
    return recorded


def _diffusion_module(resolved: Resolved) -> Any:
    from omegaconf import OmegaConf, open_dict

    from drivesim.config.conditioning import DropoutProbabilities
    from drivesim.diffusion.objectives import DiffusionObjective
    from drivesim.models.build import build_video_unet
    from drivesim.training.diffusion_module import DiffusionModule
    from drivesim.training.model_io import build_text_encoder, load_parent_groups

    cfg = resolved.cfg
    model_cfg: Any = OmegaConf.create(OmegaConf.to_container(cfg.model, resolve=True))
    with open_dict(model_cfg):
        model_cfg.pretrained = resolved.sd_weights
        if resolved.stage == "interpolation" and model_cfg.conditioning is not None:
            model_cfg.conditioning.stage = True  # the stage id tells the interpolation passes apart
        if resolved.stage == "upsampler":
            from drivesim.training.upsampler_module import upsampler_conditioning

            embed = int((model_cfg.conditioning or {}).get("embed_dim", 64))
            model_cfg.conditioning = upsampler_conditioning(embed, guess_blend=bool(cfg.stage.guess_blend))
            model_cfg.extra_in_channels = int(model_cfg.latent_channels)
        if resolved.image_parent is not None and resolved.stage != "lora":
            model_cfg.unet = parent_unet_config(model_cfg, resolved.image_parent)
    if resolved.stage == "lora":
        assert resolved.image_parent is not None
        unet = resolved.image_parent.build_unet().train()  # exactly the parent's model, then adapters
    else:
        try:
            unet = build_video_unet(model_cfg)
        except (ValueError, FileNotFoundError) as exc:  # an unsupported or mismatched UNet: one line, exit 2
            raise TrainConfigError(f"model: {exc}") from exc
    if resolved.image_parent is not None and resolved.stage != "lora":
        # The upsampler has encoders of its own: it takes the parent's spatial and temporal layers only.
        groups = ("spatial", "temporal") if resolved.stage == "upsampler" else ("spatial", "condition", "temporal")
        load_parent_groups(unet, resolved.image_parent, groups)
    text = None
    if cfg.model.text_encoder:
        text = build_text_encoder(str(cfg.model.text_encoder), unet.cross_attention_dim)
        if resolved.image_parent is not None and resolved.image_parent.text_encoder() is not None:
            text.projection.load_state_dict(resolved.image_parent.text_encoder().projection.state_dict())
    dropout = None
    if model_cfg.conditioning is not None:
        dropout = DropoutProbabilities(**OmegaConf.to_container(model_cfg.conditioning.dropout))  # type: ignore[arg-type]
    vae = load_autoencoder(resolved.autoencoder_path) if resolved.autoencoder_path is not None else None
    try:
        objective = DiffusionObjective(dict(model_cfg.noise_schedule), str(model_cfg.prediction_type),
                                       cfg.stage.min_snr_gamma, cfg.stage.loss_space)
    except ValueError as exc:  # the message names the field
        raise TrainConfigError(str(exc)) from exc
    args = (unet, objective, cfg.stage, cfg.trainer, int(cfg.seed))
    kwargs: dict[str, Any] = {"frame_size": (int(cfg.data.size[0]), int(cfg.data.size[1])), "vae": vae,
                              "text_encoder": text, "dropout": dropout}
    if resolved.stage == "upsampler":
        from drivesim.training.upsampler_module import UpsamplerModule

        patch = (int(model_cfg.latent_size[0]), int(model_cfg.latent_size[1]))
        return UpsamplerModule(*args, patch=patch, **kwargs)
    if resolved.stage == "lora":
        from drivesim.models.lora import LoraOptions
        from drivesim.training.lora_module import LoraModule

        options = LoraOptions(rank=int(cfg.stage.lora_rank), alpha=cfg.stage.lora_alpha,
                              targets=str(cfg.stage.lora_targets))
        assert resolved.image_parent is not None  # resolve() requires one for lora
        return LoraModule(*args, options=options, parent=resolved.image_parent, **kwargs)
    return DiffusionModule(*args, **kwargs)
